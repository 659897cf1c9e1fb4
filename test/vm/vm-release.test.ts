import { describe, expect, it } from 'vitest';
import { V_CLIENT, V_LGPAGE } from '../../src/constants.js';
import { PageState } from '../../src/vm/page-state.js';
import { PAGE, attachedSegment, filled, frameOf, readBytes, testEngine, tick, writeBytes } from '../support/engine.js';

describe('vm_release', () => {
  const attached = attachedSegment;

  describe('EINVAL', () => {
    it('answers region-not-defined when the region is not mapped', async () => {
      const e = await attached();
      e.svc.vmDet(e.ctx, e.vaddr);
      await expect(e.svc.vmRelease(e.ctx, e.vaddr, PAGE)).rejects.toMatchObject({ code: 'EINVAL', reason: 'region-not-defined' });
    });

    it('answers io-region for an I/O region', async () => {
      const e = await attached();
      const io = e.svc.ioAtt(e.ctx, 2 * PAGE);
      await expect(e.svc.vmRelease(e.ctx, io, PAGE)).rejects.toMatchObject({ code: 'EINVAL', reason: 'io-region' });
    });

    it('answers negative-length for nbytes < 0', async () => {
      const e = await attached();
      await expect(e.svc.vmRelease(e.ctx, e.vaddr, -4096)).rejects.toMatchObject({ code: 'EINVAL', reason: 'negative-length' });
    });

    it('answers crosses-object-boundary when the range crosses the segment end', async () => {
      const e = await attached(4);
      await expect(e.svc.vmRelease(e.ctx, e.vaddr + 3 * PAGE, PAGE + 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'crosses-object-boundary' });
    });

    it('answers large-pages for a large-page segment', async () => {
      const e = await testEngine();
      const vmid = await e.svc.vmsCreate(e.ctx, V_CLIENT, 4 * PAGE, V_LGPAGE);
      const vaddr = e.svc.vmAtt(e.ctx, vmid, 0);
      await expect(e.svc.vmRelease(e.ctx, vaddr, PAGE)).rejects.toMatchObject({ code: 'EINVAL', reason: 'large-pages' });
    });
  });

  it('answers EACCES when the caller has no write access', async () => {
    const e = await attached();
    const ro = e.svc.vmAtt(e.ctx, e.vmid, 0, 'read');
    await expect(e.svc.vmRelease(e.ctx, ro, PAGE)).rejects.toMatchObject({ code: 'EACCES', reason: 'no-write-access' });
  });

  it('makes every page intersecting the range read as zeros, resident or paged out', async () => {
    const e = await attached();
    for (let p = 0; p < 4; p++) await writeBytes(e, e.vmid, p * PAGE, filled(p + 1));
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 2);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    await e.svc.vmFlushp(e.ctx, e.vmid, 0, 1); // page 0 now only on the store
    expect(frameOf(e, e.vmid, 0)).toBe(-1);
    await e.svc.vmRelease(e.ctx, e.vaddr + 10, 2 * PAGE); // touches pages 0, 1, 2
    for (let p = 0; p < 3; p++) expect(await readBytes(e, e.vmid, p * PAGE, PAGE)).toEqual(filled(0));
    expect(await readBytes(e, e.vmid, 3 * PAGE, PAGE)).toEqual(filled(4));
    expect(e.store.durable(e.vmid, 0)).toEqual(filled(0));
    expect(e.store.durable(e.vmid, 1)).toEqual(filled(0));
  });

  it('discards frames at once and gives back the slot reservation of modified pages', async () => {
    const e = await attached();
    await writeBytes(e, e.vmid, 0, filled(7));
    expect(e.store.reserved).toBe(1);
    const free = e.vmm.pool.freeCount;
    await e.svc.vmRelease(e.ctx, e.vaddr, PAGE);
    expect(e.vmm.pool.freeCount).toBe(free + 1);
    expect(e.store.reserved).toBe(0);
    expect(e.store.writeLog).toEqual([]); // released, not written
  });

  it('discards a frame in page-out at completion and never brings its old contents back', async () => {
    const e = await attached();
    e.store.writeMode = 'manual';
    await writeBytes(e, e.vmid, 0, filled(5));
    await e.svc.vmWrite(e.ctx, e.vaddr, PAGE, 1);
    const f = frameOf(e, e.vmid, 0);
    expect(e.vmm.pool.table.state[f]).toBe(PageState.PAGE_OUT);
    await e.svc.vmRelease(e.ctx, e.vaddr, PAGE);
    expect(frameOf(e, e.vmid, 0)).toBe(-1);
    expect(e.vmm.pool.table.state[f]).toBe(PageState.PAGE_OUT); // still under I/O
    expect(await readBytes(e, e.vmid, 0, PAGE)).toEqual(filled(0));
    e.store.settleAllWrites(); // the page-out completes after the release
    await e.svc.vmsIowait(e.ctx, e.vmid);
    await tick();
    expect(e.store.durable(e.vmid, 0)).toEqual(filled(0));
    await e.svc.vmFlushp(e.ctx, e.vmid, 0, 1);
    expect(await readBytes(e, e.vmid, 0, PAGE)).toEqual(filled(0));
  });

  it('discards a frame in page-in at completion', async () => {
    const e = await attached();
    await writeBytes(e, e.vmid, 0, filled(5));
    await e.svc.vmFlushp(e.ctx, e.vmid, 0, 1);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    await tick();
    e.store.readMode = 'manual';
    const reading = readBytes(e, e.vmid, 0, PAGE);
    await tick();
    const f = frameOf(e, e.vmid, 0);
    expect(e.vmm.pool.table.state[f]).toBe(PageState.PAGE_IN);
    await e.svc.vmRelease(e.ctx, e.vaddr, PAGE);
    e.store.readMode = 'auto';
    e.store.settleAllReads();
    expect(await reading).toEqual(filled(0)); // the reader retried and saw the release
    expect(e.vmm.pool.table.state[f]).not.toBe(PageState.PAGE_IN);
  });
});

import { describe, expect, it } from 'vitest';
import { V_CLIENT, V_LGPAGE, V_WORKING } from '../../src/constants.js';
import { FrameFlag } from '../../src/vm/frame-layout.js';
import { PageState } from '../../src/vm/page-state.js';
import { PAGE, attachedSegment, filled, frameOf, readBytes, testEngine, tick, writeBytes } from '../support/engine.js';

describe('vm_write', () => {
  const attached = attachedSegment;

  describe('EINVAL', () => {
    it('answers region-not-defined for an address in no region', async () => {
      const e = await attached();
      await expect(e.svc.vmWrite(e.ctx, e.vaddr + 0x10000000, PAGE, 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'region-not-defined' });
      await expect(e.svc.vmWrite(e.ctx, 12, PAGE, 1)).rejects.toMatchObject({ reason: 'region-not-defined' });
    });

    it('answers io-region for an I/O region', async () => {
      const e = await attached();
      const io = e.svc.ioAtt(e.ctx, PAGE);
      await expect(e.svc.vmWrite(e.ctx, io, PAGE, 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'io-region' });
    });

    it('answers negative-length for nbytes < 0', async () => {
      const e = await attached();
      await expect(e.svc.vmWrite(e.ctx, e.vaddr, -1, 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'negative-length' });
    });

    it('answers crosses-object-boundary when the range leaves the segment', async () => {
      const e = await attached(2);
      await expect(e.svc.vmWrite(e.ctx, e.vaddr + PAGE, PAGE + 1, 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'crosses-object-boundary' });
    });

    it('answers crosses-object-boundary when the range leaves its 256 MiB region', async () => {
      const e = await testEngine();
      const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 0x20000000);
      const vaddr = e.svc.vmAtt(e.ctx, vmid, 0x10000000 - PAGE);
      await expect(e.svc.vmWrite(e.ctx, vaddr, 2 * PAGE, 1)).rejects.toMatchObject({ reason: 'crosses-object-boundary' });
    });

    it('answers large-pages for a large-page segment', async () => {
      const e = await testEngine();
      const vmid = await e.svc.vmsCreate(e.ctx, V_CLIENT, PAGE, V_LGPAGE);
      const vaddr = e.svc.vmAtt(e.ctx, vmid, 0);
      await expect(e.svc.vmWrite(e.ctx, vaddr, PAGE, 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'large-pages' });
    });

    it('checks in the documented order: region before length, length before boundary', async () => {
      const e = await attached(1);
      const io = e.svc.ioAtt(e.ctx, PAGE);
      await expect(e.svc.vmWrite(e.ctx, io, -1, 1)).rejects.toMatchObject({ reason: 'io-region' });
      await expect(e.svc.vmWrite(e.ctx, e.vaddr + PAGE, -1, 1)).rejects.toMatchObject({ reason: 'negative-length' });
    });
  });

  it('answers EACCES for a region attached read-only', async () => {
    const e = await attached();
    const ro = e.svc.vmAtt(e.ctx, e.vmid, 0, 'read');
    await expect(e.svc.vmWrite(e.ctx, ro, PAGE, 1)).rejects.toMatchObject({ code: 'EACCES', errno: 13, reason: 'no-write-access' });
  });

  it('answers EIO when the store has failed permanently', async () => {
    const e = await attached();
    e.store.failed = true;
    await expect(e.svc.vmWrite(e.ctx, e.vaddr, PAGE, 1)).rejects.toMatchObject({ code: 'EIO', errno: 5, reason: 'store-failed' });
  });

  it('touches nothing for nbytes = 0 and answers 0', async () => {
    const e = await attached();
    await writeBytes(e, e.vmid, 0, filled(1));
    await e.svc.vmWrite(e.ctx, e.vaddr, 0, 1);
    expect(e.store.writeLog).toEqual([]);
  });

  it('has no side effect when it answers an error', async () => {
    const e = await attached(2);
    await writeBytes(e, e.vmid, 0, filled(1));
    await expect(e.svc.vmWrite(e.ctx, e.vaddr, 3 * PAGE, 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'crosses-object-boundary' });
    expect(e.store.writeLog).toEqual([]);
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 0)]).toBe(PageState.MODIFIED);
  });

  it('pages out every modified page intersecting the range and returns before completion', async () => {
    const e = await attached();
    e.store.writeMode = 'manual';
    for (let p = 0; p < 4; p++) await writeBytes(e, e.vmid, p * PAGE, filled(p + 1));
    await e.svc.vmWrite(e.ctx, e.vaddr + PAGE + 100, PAGE, 1); // pages 1 and 2
    expect(e.store.writeLog.map((w) => w.pno)).toEqual([1, 2]);
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 1)]).toBe(PageState.PAGE_OUT);
    e.store.settleAllWrites();
    await e.svc.vmsIowait(e.ctx, e.vmid);
    expect(e.store.durable(e.vmid, 2)).toEqual(filled(3));
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 1)]).toBe(PageState.CLEAN);
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 0)]).toBe(PageState.MODIFIED);
  });

  it('without force skips a page whose last page-out started less than minAgeMs ago; force writes it', async () => {
    let now = 1_000_000;
    const e = await testEngine({ now: () => now });
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 2 * PAGE);
    const vaddr = e.svc.vmAtt(e.ctx, vmid, 0);
    await writeBytes(e, vmid, 0, filled(1));
    await e.svc.vmWrite(e.ctx, vaddr, PAGE, 0); // never paged out: old enough
    await e.svc.vmsIowait(e.ctx, vmid);
    expect(e.store.writeLog).toHaveLength(1);

    await writeBytes(e, vmid, 0, filled(2));
    now += 1999;
    await e.svc.vmWrite(e.ctx, vaddr, PAGE, 0);
    expect(e.store.writeLog).toHaveLength(1); // too young: skipped
    now += 1;
    await e.svc.vmWrite(e.ctx, vaddr, PAGE, 0);
    await e.svc.vmsIowait(e.ctx, vmid);
    expect(e.store.writeLog).toHaveLength(2); // 2000 ms old: written

    await writeBytes(e, vmid, 0, filled(3));
    await e.svc.vmWrite(e.ctx, vaddr, PAGE, 1); // force ignores age
    await e.svc.vmsIowait(e.ctx, vmid);
    expect(e.store.writeLog).toHaveLength(3);
    expect(e.store.durable(vmid, 0)).toEqual(filled(3));
  });

  it('without force skips a page in page-out; with force queues a second page-out behind the first', async () => {
    const e = await attached();
    e.store.writeMode = 'manual';
    await writeBytes(e, e.vmid, 0, filled(1));
    await e.svc.vmWrite(e.ctx, e.vaddr, PAGE, 1);
    e.store.capture(e.store.pendingWrites[0]);
    await tick();
    await writeBytes(e, e.vmid, 0, filled(2)); // modified again while in page-out
    await e.svc.vmWrite(e.ctx, e.vaddr, PAGE, 0);
    expect(e.store.pendingWrites).toHaveLength(1);
    await e.svc.vmWrite(e.ctx, e.vaddr, PAGE, 1);
    expect(e.store.pendingWrites).toHaveLength(1); // queued, not started while the first is in flight
    const waited = e.svc.vmsIowait(e.ctx, e.vmid);
    e.store.settleWrite(e.store.pendingWrites[0]);
    await tick();
    expect(e.store.pendingWrites).toHaveLength(1); // the second starts when the first completes
    e.store.settleAllWrites();
    await waited;
    expect(e.store.durable(e.vmid, 0)).toEqual(filled(2));
  });

  it('leaves unmodified resident pages in memory with their reference bit cleared', async () => {
    const e = await attached();
    await readBytes(e, e.vmid, 0, PAGE);
    const f = frameOf(e, e.vmid, 0);
    expect(e.vmm.pool.table.flags[f] & FrameFlag.REFERENCED).toBe(FrameFlag.REFERENCED);
    await e.svc.vmWrite(e.ctx, e.vaddr, PAGE, 1);
    expect(frameOf(e, e.vmid, 0)).toBe(f);
    expect(e.vmm.pool.table.state[f]).toBe(PageState.CLEAN);
    expect(e.vmm.pool.table.flags[f] & FrameFlag.REFERENCED).toBe(0);
    expect(e.store.writeLog).toEqual([]);
  });

  it('lets writers wait while the store still reads a frame, then keeps the page modified', async () => {
    const e = await attached();
    e.store.writeMode = 'manual';
    await writeBytes(e, e.vmid, 0, filled(1));
    await e.svc.vmWrite(e.ctx, e.vaddr, PAGE, 1);
    const blocked = writeBytes(e, e.vmid, 0, filled(9));
    await tick();
    const pending = e.store.pendingWrites[0];
    e.store.capture(pending);
    await blocked;
    expect(pending.snapshot[0]).toEqual(filled(1)); // the write did not tear the page-out
    e.store.settleAllWrites();
    await e.svc.vmsIowait(e.ctx, e.vmid);
    expect(e.vmm.isModified(frameOf(e, e.vmid, 0))).toBe(true);
    expect(await readBytes(e, e.vmid, 0, PAGE)).toEqual(filled(9));
  });
});

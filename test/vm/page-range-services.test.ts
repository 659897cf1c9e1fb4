import { describe, expect, it } from 'vitest';
import { V_CLIENT, V_IOWAIT, V_LGPAGE, V_WORKING } from '../../src/constants.js';
import type { ClientContext } from '../../src/vm/context.js';
import { PageState } from '../../src/vm/page-state.js';
import type { VmServices } from '../../src/vm/services.js';
import { PAGE, filled, frameOf, readBytes, testEngine, tick, writeBytes } from '../support/engine.js';

type RangeService = 'vmWritep' | 'vmReleasep' | 'vmFlushp' | 'vmInvalidatep';
const call = (svc: VmServices, name: RangeService | 'vmReadp', ctx: ClientContext, vmid: number, pfirst: number, npages: number) =>
  name === 'vmReadp' ? svc.vmReadp(ctx, vmid, pfirst, npages, 0) : svc[name](ctx, vmid, pfirst, npages);

describe('page-range services: argument checks in the order of vm_writep', () => {
  for (const name of ['vmWritep', 'vmReleasep', 'vmFlushp', 'vmInvalidatep', 'vmReadp'] as const) {
    it(`${name} answers EINVAL for each documented condition, in order`, async () => {
      const e = await testEngine();
      const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 4 * PAGE);
      const cases: [number, number, number, string][] = [
        [vmid, 0, 0, 'zero-range'],
        [999, 0, 0, 'zero-range'],
        [999, -1, 1, 'no-such-segment'],
        [vmid, -1, 1, 'negative-page'],
        [vmid, -1, -1, 'negative-page'],
        [vmid, 1, -1, 'negative-count'],
        [vmid, 3, 2, 'range-beyond-extent'],
      ];
      for (const [v, pfirst, npages, reason] of cases) {
        await expect(call(e.svc, name, e.ctx, v, pfirst, npages), `${v} ${pfirst} ${npages}`).rejects.toMatchObject({ code: 'EINVAL', reason });
      }
    });
  }

  for (const name of ['vmWritep', 'vmReleasep', 'vmFlushp', 'vmInvalidatep'] as const) {
    it(`${name} answers large-pages for a large-page segment`, async () => {
      const e = await testEngine();
      const vmid = await e.svc.vmsCreate(e.ctx, V_CLIENT, 4 * PAGE, V_LGPAGE);
      await expect(call(e.svc, name, e.ctx, vmid, 0, 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'large-pages' });
    });
  }

  it('vm_readp refuses flags other than V_IOWAIT', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 4 * PAGE);
    await expect(e.svc.vmReadp(e.ctx, vmid, 0, 1, 2)).rejects.toMatchObject({ code: 'EINVAL', reason: 'unsupported-flag' });
    await expect(e.svc.vmReadp(e.ctx, vmid, 0, 1, 2 ** 32 + V_IOWAIT)).rejects.toMatchObject({ code: 'EINVAL', reason: 'unsupported-flag' });
  });
});

describe('page-range services: behaviour', () => {
  async function segment(type = V_WORKING) {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, type, 8 * PAGE);
    return { ...e, vmid };
  }

  it('vm_writep pages out every modified page of the range and clears reference bits of the rest', async () => {
    const e = await segment();
    await writeBytes(e, e.vmid, 0, filled(1));
    await readBytes(e, e.vmid, PAGE, 1);
    await writeBytes(e, e.vmid, 2 * PAGE, filled(3));
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 2);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    expect(e.store.writeLog.map((w) => w.pno)).toEqual([0]);
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 2)]).toBe(PageState.MODIFIED);
  });

  for (const how of ['vm_flushp', 'vm_flushp of modified pages', 'vms_delete', 'vm_invalidatep'] as const) {
    it(`${how} frees frames so that pages made resident in a row next get neighbouring frames`, async () => {
      const e = await testEngine({ frames: 64 });
      const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 32 * PAGE);
      const order = [...Array(32).keys()].sort((a, b) => ((a * 7919) % 32) - ((b * 7919) % 32)); // a fixed shuffle
      for (const p of order) await writeBytes(e, vmid, p * PAGE, filled(p + 1)); // frames taken in that order
      if (how !== 'vm_flushp of modified pages') await e.svc.vmWritep(e.ctx, vmid, 0, 32);
      await e.svc.vmsIowait(e.ctx, vmid);
      let next = vmid;
      if (how.startsWith('vm_flushp')) await e.svc.vmFlushp(e.ctx, vmid, 0, 32);
      await e.svc.vmsIowait(e.ctx, vmid); // a modified page's frame is freed once written
      if (how === 'vm_invalidatep') await e.svc.vmInvalidatep(e.ctx, vmid, 0, 32);
      if (how === 'vms_delete') {
        await e.svc.vmsDelete(e.ctx, vmid);
        next = await e.svc.vmsCreate(e.ctx, V_WORKING, 32 * PAGE);
      }
      for (let p = 0; p < 32; p++) await readBytes(e, next, p * PAGE, 1);
      const frames = [...Array(32).keys()].map((p) => frameOf(e, next, p));
      expect(frames.slice(1).every((f, i) => f === frames[i] + 1)).toBe(true);
    });
  }

  it('vm_readp starts page-ins of absent pages; V_IOWAIT first waits for I/O in the range', async () => {
    const e = await segment();
    e.store.writeMode = 'manual';
    await writeBytes(e, e.vmid, 0, filled(1));
    await e.svc.vmFlushp(e.ctx, e.vmid, 0, 1);
    let done = false;
    const readp = e.svc.vmReadp(e.ctx, e.vmid, 0, 3, V_IOWAIT).then(() => (done = true));
    await tick();
    expect(done).toBe(false);
    e.store.settleAllWrites();
    await readp;
    await tick();
    for (let p = 0; p < 3; p++) expect(e.vmm.pool.table.state[frameOf(e, e.vmid, p)]).toBe(PageState.CLEAN);
    expect(await readBytes(e, e.vmid, 0, PAGE)).toEqual(filled(1));
  });

  it('vm_makep makes a zero-filled modified client page without a page-in, and leaves a resident page alone', async () => {
    const e = await segment(V_CLIENT);
    await writeBytes(e, e.vmid, PAGE, filled(6));
    e.store.readMode = 'manual';
    await e.svc.vmMakep(e.ctx, e.vmid, 0);
    await e.svc.vmMakep(e.ctx, e.vmid, 1);
    expect(e.store.pendingReads).toEqual([]);
    expect(await readBytes(e, e.vmid, 0, 2 * PAGE)).toEqual(Uint8Array.from([...filled(0), ...filled(6)]));
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 0)]).toBe(PageState.MODIFIED);
  });

  it('vm_makep answers EINVAL for a non-client segment or a bad page number', async () => {
    const e = await segment();
    await expect(e.svc.vmMakep(e.ctx, e.vmid, 0)).rejects.toMatchObject({ reason: 'not-client-segment' });
    const client = await e.svc.vmsCreate(e.ctx, V_CLIENT, 2 * PAGE);
    await expect(e.svc.vmMakep(e.ctx, client, 2)).rejects.toMatchObject({ reason: 'bad-page-number' });
    await expect(e.svc.vmMakep(e.ctx, client, -1)).rejects.toMatchObject({ reason: 'bad-page-number' });
    await expect(e.svc.vmMakep(e.ctx, 4711, 0)).rejects.toMatchObject({ reason: 'no-such-segment' });
  });

  it('vm_invalidatep waits for I/O, then discards frames without writing: pages revert to their last complete version', async () => {
    const e = await segment();
    await writeBytes(e, e.vmid, 0, filled(1));
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    e.store.writeMode = 'manual';
    await writeBytes(e, e.vmid, 0, filled(2));
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
    await writeBytes(e, e.vmid, PAGE, filled(3)); // modified, never written
    let done = false;
    const inval = e.svc.vmInvalidatep(e.ctx, e.vmid, 0, 2).then(() => (done = true));
    await tick();
    expect(done).toBe(false);
    e.store.settleAllWrites();
    await inval;
    expect(e.vmm.segments.get(e.vmid)!.pages.size).toBe(0);
    expect(e.store.reserved).toBe(0);
    expect(await readBytes(e, e.vmid, 0, PAGE)).toEqual(filled(2));
    expect(await readBytes(e, e.vmid, PAGE, PAGE)).toEqual(filled(0));
    expect(e.store.writeLog.map((w) => w.pno)).toEqual([0, 0]);
  });

  it('vm_qpages counts the frames of a segment; vm_qmodify reports modified frames and the segment modified bit', async () => {
    const e = await segment();
    expect(e.svc.vmQpages(e.ctx, e.vmid)).toBe(0);
    expect(e.svc.vmQmodify(e.ctx, e.vmid)).toBe(false);
    await readBytes(e, e.vmid, 0, 2 * PAGE);
    expect(e.svc.vmQpages(e.ctx, e.vmid)).toBe(2);
    expect(e.svc.vmQmodify(e.ctx, e.vmid)).toBe(false);
    await writeBytes(e, e.vmid, 0, filled(1));
    expect(e.svc.vmQmodify(e.ctx, e.vmid)).toBe(true);
    expect(e.svc.vmQmodify(e.ctx, e.vmid)).toBe(true); // frame bits are not changed by asking
    await e.svc.vmFlushp(e.ctx, e.vmid, 0, 8);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    await tick();
    expect(e.svc.vmQpages(e.ctx, e.vmid)).toBe(0);
    expect(e.svc.vmQmodify(e.ctx, e.vmid)).toBe(true); // a page was written out: the segment bit
    expect(e.svc.vmQmodify(e.ctx, e.vmid)).toBe(false); // ... which the first query cleared
    expect(() => e.svc.vmQpages(e.ctx, 4711)).toThrow(expect.objectContaining({ reason: 'no-such-segment' }));
  });
});

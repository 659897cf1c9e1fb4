import { describe, expect, it } from 'vitest';
import {
  V_CLIENT,
  V_WORKING,
  VM_IOACCESSP_FLUSH as FLUSH,
  VM_IOACCESSP_MAKE as MAKE,
  VM_IOACCESSP_PGINWAIT as PGINWAIT,
  VM_IOACCESSP_PGOUTWAIT as PGOUTWAIT,
  VM_IOACCESSP_WAITONLY as WAITONLY,
} from '../../src/constants.js';
import { PageState } from '../../src/vm/page-state.js';
import { PAGE, filled, frameOf, readBytes, testEngine, tick, writeBytes } from '../support/engine.js';

describe('vm_ioaccessp', () => {
  async function client(pages = 512) {
    const e = await testEngine({ frames: 512 });
    const vmid = await e.svc.vmsCreate(e.ctx, V_CLIENT, pages * PAGE);
    return { ...e, vmid };
  }

  describe('EINVAL, in the documented order', () => {
    const cases: [string, (vmid: number, working: number) => [number, number, number, number], string][] = [
      ['pfirst = 0 and npages = 0', (v) => [v, 0, 0, MAKE], 'zero-range'],
      ['pfirst < 0', (v) => [v, -1, 1, MAKE], 'negative-page'],
      ['npages < 0', (v) => [v, 1, -1, MAKE], 'negative-count'],
      ['no such segment', () => [777, 0, 1, MAKE], 'no-such-segment'],
      ['interval passes the extent', (v) => [v, 510, 3, MAKE], 'range-beyond-extent'],
      ['MAKE of more than 1 MiB of pages', (v) => [v, 0, 257, MAKE], 'make-too-large'],
      ['not a client segment', (_v, w) => [w, 0, 1, MAKE], 'not-client-segment'],
      ['a flag outside 0x1F', (v) => [v, 0, 1, 0x20], 'unsupported-flag'],
      ['MAKE past 31 bits (2^32 + MAKE)', (v) => [v, 0, 1, 2 ** 32 + MAKE], 'unsupported-flag'],
      ['MAKE and FLUSH both', (v) => [v, 0, 1, MAKE | FLUSH], 'make-and-flush'],
      ['WAITONLY with neither wait', (v) => [v, 0, 1, WAITONLY], 'waitonly-without-wait'],
      ['WAITONLY with MAKE', (v) => [v, 0, 1, WAITONLY | PGINWAIT | MAKE], 'waitonly-with-action'],
      ['WAITONLY with FLUSH', (v) => [v, 0, 1, WAITONLY | PGOUTWAIT | FLUSH], 'waitonly-with-action'],
      // Several errors at once: the first in the list wins.
      ['pfirst < 0 on an unknown segment', () => [777, -1, 1, MAKE], 'negative-page'],
      ['too large a MAKE on a working segment', (_v, w) => [w, 0, 300, MAKE], 'make-too-large'],
      ['a bad flag with MAKE and FLUSH', (v) => [v, 0, 1, 0x40 | MAKE | FLUSH], 'unsupported-flag'],
      ['past the extent with a bad flag', (v) => [v, 600, 1, 0x40], 'range-beyond-extent'],
    ];
    for (const [name, args, reason] of cases) {
      it(`answers ${reason} for ${name}`, async () => {
        const e = await client();
        const working = await e.svc.vmsCreate(e.ctx, V_WORKING, 512 * PAGE);
        await expect(e.svc.vmIoaccessp(e.ctx, ...args(e.vmid, working))).rejects.toMatchObject({ code: 'EINVAL', errno: 22, reason });
      });
    }

    it('allows a MAKE of exactly 1 MiB', async () => {
      const e = await client();
      await expect(e.svc.vmIoaccessp(e.ctx, e.vmid, 0, 256, MAKE)).resolves.toBeUndefined();
    });
  });

  it('MAKE gives absent pages a frame in page-in and starts the page-in; resident pages are left alone', async () => {
    const e = await client();
    await writeBytes(e, e.vmid, PAGE, filled(8));
    const f1 = frameOf(e, e.vmid, 1);
    e.store.readMode = 'manual';
    await e.svc.vmIoaccessp(e.ctx, e.vmid, 0, 3, MAKE);
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 0)]).toBe(PageState.PAGE_IN);
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 2)]).toBe(PageState.PAGE_IN);
    expect(frameOf(e, e.vmid, 1)).toBe(f1);
    expect(e.vmm.pool.table.state[f1]).toBe(PageState.MODIFIED);
    expect(e.store.pendingReads.map((r) => r.pno)).toEqual([0, 2]);
    e.store.settleAllReads();
    await tick();
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 0)]).toBe(PageState.CLEAN);
  });

  it('PGINWAIT blocks until no page of the range is in page-in', async () => {
    const e = await client();
    e.store.readMode = 'manual';
    let done = false;
    const call = e.svc.vmIoaccessp(e.ctx, e.vmid, 0, 2, MAKE | PGINWAIT).then(() => (done = true));
    await tick();
    expect(done).toBe(false);
    e.store.pendingReads.shift()!.finish();
    await tick();
    expect(done).toBe(false);
    e.store.settleAllReads();
    await call;
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 1)]).toBe(PageState.CLEAN);
  });

  it('FLUSH pages out modified pages and frees frames; PGOUTWAIT blocks until the page-outs complete', async () => {
    const e = await client();
    e.store.writeMode = 'manual';
    await writeBytes(e, e.vmid, 0, filled(1));
    await readBytes(e, e.vmid, PAGE, 10);
    let done = false;
    const call = e.svc.vmIoaccessp(e.ctx, e.vmid, 0, 2, FLUSH | PGOUTWAIT).then(() => (done = true));
    await tick();
    expect(frameOf(e, e.vmid, 1)).toBe(-1); // clean frame freed at once
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 0)]).toBe(PageState.PAGE_OUT);
    expect(done).toBe(false);
    e.store.settleAllWrites();
    await call;
    expect(frameOf(e, e.vmid, 0)).toBe(-1); // freed when its page-out completed
    expect(e.store.durable(e.vmid, 0)).toEqual(filled(1));
  });

  it('WAITONLY only waits', async () => {
    const e = await client();
    e.store.writeMode = 'manual';
    await writeBytes(e, e.vmid, 0, filled(1));
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
    let done = false;
    const call = e.svc.vmIoaccessp(e.ctx, e.vmid, 0, 4, WAITONLY | PGOUTWAIT | PGINWAIT).then(() => (done = true));
    await tick();
    expect(done).toBe(false);
    expect(e.store.writeLog).toHaveLength(1);
    e.store.settleAllWrites();
    await call;
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 0)]).toBe(PageState.CLEAN);
  });
});

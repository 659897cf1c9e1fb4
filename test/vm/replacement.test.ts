import { describe, expect, it } from 'vitest';
import { V_WORKING } from '../../src/constants.js';
import { PagerError } from '../../src/errors.js';
import { FrameFlag } from '../../src/vm/frame-layout.js';
import { PAGE, filled, frameOf, readBytes, testEngine, tick, writeBytes } from '../support/engine.js';

describe('page replacement', () => {
  it('gives a referenced page a second chance and steals an unreferenced one', async () => {
    const e = await testEngine({ frames: 4, minFree: 0, maxFree: 0 });
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 16 * PAGE);
    for (let p = 0; p < 4; p++) await readBytes(e, vmid, p * PAGE, 1); // pool full, all referenced
    // vm_writep clears the reference bit of unmodified pages: pages 1 and 3 become candidates.
    await e.svc.vmWritep(e.ctx, vmid, 1, 1);
    await e.svc.vmWritep(e.ctx, vmid, 3, 1);
    await readBytes(e, vmid, 4 * PAGE, 1);
    await readBytes(e, vmid, 5 * PAGE, 1);
    expect([0, 1, 2, 3].map((p) => frameOf(e, vmid, p) >= 0)).toEqual([true, false, true, false]);
  });

  it('pages out a modified victim before its frame is reused, and its bytes survive', async () => {
    const e = await testEngine({ frames: 4, minFree: 1, maxFree: 2 });
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 16 * PAGE);
    for (let p = 0; p < 12; p++) await writeBytes(e, vmid, p * PAGE, filled(p + 1));
    expect(e.store.writeLog.length).toBeGreaterThanOrEqual(8);
    for (let p = 0; p < 12; p++) expect(await readBytes(e, vmid, p * PAGE, PAGE)).toEqual(filled(p + 1));
  });

  it('refills the free list to the high watermark in the background once it drops below the low one', async () => {
    const e = await testEngine({ frames: 32, minFree: 4, maxFree: 12 });
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 64 * PAGE);
    for (let p = 0; p < 29; p++) await readBytes(e, vmid, p * PAGE, 1);
    for (let i = 0; i < 5; i++) await tick();
    expect(e.vmm.pool.freeCount).toBeGreaterThanOrEqual(4);
    // Cleared reference bits on the second sweep let the daemon reach the high watermark.
    for (let i = 0; i < 10; i++) await tick();
    expect(e.vmm.pool.freeCount).toBeGreaterThanOrEqual(12);
  });

  it('launders modified pages in the background and frees their frames when the page-out completes', async () => {
    const e = await testEngine({ frames: 16, minFree: 4, maxFree: 8 });
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 64 * PAGE);
    for (let p = 0; p < 14; p++) await writeBytes(e, vmid, p * PAGE, filled(p + 1));
    for (let i = 0; i < 20; i++) await tick();
    expect(e.vmm.pool.freeCount).toBeGreaterThanOrEqual(8);
    expect(e.store.writeLog.length).toBeGreaterThan(0);
    for (const { pno } of e.store.writeLog) expect(e.store.durable(vmid, pno)).toEqual(filled(pno + 1));
  });

  it('sets the reference bit on every access', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, PAGE);
    await readBytes(e, vmid, 0, 1);
    const f = frameOf(e, vmid, 0);
    e.vmm.pool.table.flags[f] = 0;
    await readBytes(e, vmid, 0, 1);
    expect(e.vmm.pool.table.flags[f] & FrameFlag.REFERENCED).toBe(FrameFlag.REFERENCED);
  });
});

describe('laundry', () => {
  it('gives a laundered page written again during its page-out back to the clock instead of leaving it marked', async () => {
    const e = await testEngine({ frames: 8, minFree: 2, maxFree: 4 });
    e.store.writeMode = 'manual';
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 16 * PAGE);
    for (let p = 0; p < 7; p++) await writeBytes(e, vmid, p * PAGE, filled(p + 1));
    for (let i = 0; i < 5; i++) await tick();
    const laundering = e.store.pendingWrites.flatMap((w) => w.pages.map((p) => p.pno));
    expect(laundering.length).toBeGreaterThan(0);
    const pno = laundering[0];
    for (const w of e.store.pendingWrites) e.store.capture(w);
    await tick();
    await writeBytes(e, vmid, pno * PAGE, filled(99)); // written again while in page-out
    e.store.settleAllWrites();
    await tick();
    const f = frameOf(e, vmid, pno);
    expect(f).toBeGreaterThanOrEqual(0);
    expect(e.vmm.isModified(f)).toBe(true);
    expect(e.vmm.pool.table.flags[f] & FrameFlag.FREE_AT_IO_DONE).toBe(0);
    expect(await readBytes(e, vmid, pno * PAGE, PAGE)).toEqual(filled(99));
  });
});

describe('laundry on a failing device', () => {
  it('keeps backing off after a failed batch although batches sent beside it succeed', async () => {
    const e = await testEngine({ frames: 16, minFree: 4, maxFree: 8 });
    e.store.writeMode = 'manual';
    e.store.batchLimit = 2;
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 64 * PAGE);
    for (let p = 0; p < 6; p++) await writeBytes(e, vmid, p * PAGE, filled(p + 1));
    await e.svc.vmWritep(e.ctx, vmid, 0, 6);
    expect(e.store.pendingWrites.map((w) => w.pages.length)).toEqual([2, 2, 2]); // one range, three batches
    const [failing, ...others] = e.store.pendingWrites;
    e.store.settleWrite(failing, new PagerError('page-out-failed', 'injected'));
    for (const w of others) e.store.settleWrite(w, undefined);
    await tick();
    // The free list falls below its low watermark with two pages modified: the laundry would write
    // them again at once, were the pager not backing off.
    for (let p = 6; p < 13; p++) await writeBytes(e, vmid, p * PAGE, filled(p + 1));
    for (let i = 0; i < 10; i++) await tick();
    expect(e.store.pendingWrites).toEqual([]);
    e.store.writeMode = 'auto';
    await new Promise((r) => setTimeout(r, 200)); // past the back-off: laundered, the pages survive
    for (let p = 0; p < 13; p++) expect(await readBytes(e, vmid, p * PAGE, PAGE)).toEqual(filled(p + 1));
  });

  it('backs off instead of retrying failed page-outs as fast as the device fails them', async () => {
    const e = await testEngine({ frames: 16, minFree: 4, maxFree: 8 });
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 64 * PAGE);
    e.store.failWrites = new PagerError('page-out-failed', 'injected');
    for (let p = 0; p < 13; p++) await writeBytes(e, vmid, p * PAGE, filled(p + 1));
    await new Promise((r) => setTimeout(r, 500));
    // Without a back-off the laundry retries on every turn of the event loop: thousands of attempts.
    expect(e.store.writeLog.length).toBeGreaterThan(0);
    expect(e.vmm.counters.pageOutFailures).toBeLessThan(200);
    // Healed: the laundry succeeds again and the pages survive.
    e.store.failWrites = undefined;
    await new Promise((r) => setTimeout(r, 400));
    for (let p = 0; p < 13; p++) expect(await readBytes(e, vmid, p * PAGE, PAGE)).toEqual(filled(p + 1));
  });
});

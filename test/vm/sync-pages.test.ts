import { describe, expect, it } from 'vitest';
import { V_WORKING } from '../../src/constants.js';
import { PagerError } from '../../src/errors.js';
import { PAGE, filled, testEngine, writeBytes } from '../support/engine.js';

/** The pages a call asked the store to write, in ascending order. */
function written(log: { pno: number }[], from: number): number[] {
  return log.slice(from).map((w) => w.pno).sort((a, b) => a - b);
}

describe('syncPages of a whole segment looks at the pages noted modified, and misses none', () => {
  it('pages out what was modified since the last sync, again after a failed page-out, and a page modified while its page-out is in flight', async () => {
    const e = await testEngine({ writebackMinAgeMs: 60_000, minFree: 0, maxFree: 0 });
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 32 * PAGE);
    for (let pno = 0; pno < 10; pno++) await writeBytes(e, vmid, pno * PAGE, filled(pno + 1));
    let mark = e.store.writeLog.length;
    await e.svc.syncPages(e.ctx, vmid, 0, 32);
    await e.svc.vmsIowait(e.ctx, vmid);
    expect(written(e.store.writeLog, mark)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

    // Only what changed since.
    await writeBytes(e, vmid, 7 * PAGE, filled(70));
    await writeBytes(e, vmid, 3 * PAGE, filled(30));
    mark = e.store.writeLog.length;
    await e.svc.syncPages(e.ctx, vmid, 0, 32);
    await e.svc.vmsIowait(e.ctx, vmid);
    expect(written(e.store.writeLog, mark)).toEqual([3, 7]);

    // A page-out that fails leaves the page modified: the next sync takes it again.
    await writeBytes(e, vmid, 5 * PAGE, filled(50));
    e.store.failWrites = new PagerError('page-out-failed');
    await e.svc.syncPages(e.ctx, vmid, 0, 32);
    await expect(e.svc.vmsIowait(e.ctx, vmid)).rejects.toMatchObject({ code: 'EIO' });
    e.store.failWrites = undefined;
    mark = e.store.writeLog.length;
    await e.svc.syncPages(e.ctx, vmid, 0, 32);
    await e.svc.vmsIowait(e.ctx, vmid);
    expect(written(e.store.writeLog, mark)).toEqual([5]);

    // Modified again while its page-out is in flight, and synced then: the sync queues the newer
    // bytes behind the write in flight, and its wait covers them.
    e.store.writeMode = 'manual';
    await writeBytes(e, vmid, 1 * PAGE, filled(11));
    await e.svc.syncPages(e.ctx, vmid, 0, 32);
    for (const pending of e.store.pendingWrites) e.store.capture(pending); // the bytes taken: the frame may change
    await writeBytes(e, vmid, 1 * PAGE, filled(12));
    mark = e.store.writeLog.length;
    await e.svc.syncPages(e.ctx, vmid, 0, 32);
    e.store.writeMode = 'auto';
    e.store.settleAllWrites();
    await e.svc.vmsIowait(e.ctx, vmid);
    expect(written(e.store.writeLog, mark)).toEqual([1]);
    const stored = new Uint8Array(PAGE);
    await e.store.readPage(vmid, 1, stored);
    expect(stored).toEqual(filled(12));
  });
});

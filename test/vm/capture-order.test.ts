import { describe, expect, it } from 'vitest';
import { V_WORKING } from '../../src/constants.js';
import type { PageWrite, WriteTicket } from '../../src/vm/store.js';
import { PAGE, filled, readBytes, testEngine, tick, writeBytes } from '../support/engine.js';

describe('a batch whose store reports it complete before captured', () => {
  it('is settled only after its frames are unpinned: a frame freed at completion is never left pinned or unpinned twice', async () => {
    const e = await testEngine({ writebackMinAgeMs: 60_000, minFree: 0, maxFree: 0 });
    // A store that finishes the write before it lets the frames go (a socket's write callback
    // can come after the peer's answer).
    const writePages = e.store.writePages.bind(e.store);
    e.store.writePages = (pages: readonly PageWrite[]): WriteTicket => {
      const ticket = writePages(pages);
      return { complete: ticket.complete, captured: ticket.complete.then(tick, tick) };
    };
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 8 * PAGE);
    for (let pno = 0; pno < 8; pno++) await writeBytes(e, vmid, pno * PAGE, filled(pno + 1));
    await e.svc.vmFlushp(e.ctx, vmid, 0, 8); // frames freed when their page-outs complete
    await e.svc.vmsIowait(e.ctx, vmid);
    for (let i = 0; i < 5; i++) await tick();
    expect([...e.vmm.pool.table.pins].every((p) => p === 0)).toBe(true);
    for (let pno = 0; pno < 8; pno++) expect((await readBytes(e, vmid, pno * PAGE, PAGE))[0]).toBe(pno + 1);
  });
});

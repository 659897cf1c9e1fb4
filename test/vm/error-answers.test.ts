import { describe, expect, it } from 'vitest';
import { V_CLIENT, V_INTRSEG, V_IOWAIT, V_LGPAGE, V_WAITALL, V_WORKING, VM_IOACCESSP_PGINWAIT } from '../../src/constants.js';
import { PagerError } from '../../src/errors.js';
import { PageState } from '../../src/vm/page-state.js';
import { PAGE, attachedSegment, filled, frameOf, readBytes, testEngine, tick, writeBytes } from '../support/engine.js';

/** A second client of the same engine (its own context, as a second connection has). */
function secondClient(e: Awaited<ReturnType<typeof testEngine>>, uid = 1000) {
  return e.svc.createContext({ uid, gid: 1000, pid: 4343 });
}

describe('an error answer changes nothing', () => {
  it('vm_release and vm_releasep on a failed store answer EIO and keep the newer bytes', async () => {
    const e = await attachedSegment(4);
    await writeBytes(e, e.vmid, 0, filled(1));
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
    await e.svc.vmsIowait(e.ctx, e.vmid); // version 1 durable
    await writeBytes(e, e.vmid, 0, filled(2)); // version 2 only in memory
    e.store.failed = true;
    await expect(e.svc.vmRelease(e.ctx, e.vaddr, PAGE)).rejects.toMatchObject({ code: 'EIO', reason: 'store-failed' });
    await expect(e.svc.vmReleasep(e.ctx, e.vmid, 0, 1)).rejects.toMatchObject({ code: 'EIO', reason: 'store-failed' });
    expect(await readBytes(e, e.vmid, 0, PAGE)).toEqual(filled(2));
    expect(e.vmm.pool.table.state[frameOf(e, e.vmid, 0)]).toBe(PageState.MODIFIED);
    e.store.failed = false;
    await e.svc.vmReleasep(e.ctx, e.vmid, 0, 1);
    expect(await readBytes(e, e.vmid, 0, PAGE)).toEqual(filled(0));
  });

  it('vms_delete on a failed store answers EIO and the segment stays, pages and all', async () => {
    const e = await attachedSegment(4);
    await writeBytes(e, e.vmid, PAGE, filled(7));
    e.store.failed = true;
    await expect(e.svc.vmsDelete(e.ctx, e.vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'store-failed' });
    expect(await readBytes(e, e.vmid, PAGE, PAGE)).toEqual(filled(7));
    expect((await e.store.loadSegments()).map((s) => s.vmid)).toContain(e.vmid);
    e.store.failed = false;
    await e.svc.vmsDelete(e.ctx, e.vmid);
    await expect(readBytes(e, e.vmid, 0, PAGE)).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
  });

  it('vm_write of 0 bytes answers 0 on a failed store (nbytes = 0 touches nothing)', async () => {
    const e = await attachedSegment(4);
    e.store.failed = true;
    await expect(e.svc.vmWrite(e.ctx, e.vaddr, 0, 1)).resolves.toBeUndefined();
    await expect(e.svc.vmRelease(e.ctx, e.vaddr, 0)).resolves.toBeUndefined();
    await expect(e.svc.vmWrite(e.ctx, e.vaddr, PAGE, 1)).rejects.toMatchObject({ code: 'EIO', reason: 'store-failed' });
  });

  it('vm_ioaccessp with a fractional modifier answers bad-argument', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_CLIENT, 4 * PAGE);
    await expect(e.svc.vmIoaccessp(e.ctx, vmid, 0, 1, 1.5)).rejects.toMatchObject({ code: 'EINVAL', reason: 'bad-argument' });
  });
});

describe('page-out errors are heard once by every client', () => {
  it('both clients of a segment hear a failure; neither takes the other’s; a later client hears nothing', async () => {
    const e = await testEngine();
    const b = secondClient(e);
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 4 * PAGE, 0, 0o660);
    await writeBytes(e, vmid, 0, filled(1));
    e.store.failWrites = new PagerError('page-out-failed', 'injected');
    await e.svc.vmWritep(e.ctx, vmid, 0, 1);
    await expect(e.svc.vmsIowait(b, vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'page-out-failed' });
    await expect(e.svc.vmsIowait(e.ctx, vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'page-out-failed' });
    // Heard once each: the next waits answer 0 (nothing more failed).
    await expect(e.svc.vmsIowait(b, vmid)).resolves.toBeUndefined();
    await expect(e.svc.vmsIowaitf(e.ctx, vmid, V_WAITALL)).resolves.toBeUndefined();
    const late = secondClient(e);
    await expect(e.svc.vmsIowait(late, vmid)).resolves.toBeUndefined();
    expect(e.vmm.isModified(frameOf(e, vmid, 0))).toBe(true); // still the only good copy
  });

  it('keeps one flag per client and segment however often page-outs fail, and drops it with the client', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 4 * PAGE);
    const b = secondClient(e);
    e.store.failWrites = new PagerError('page-out-failed', 'injected');
    for (let i = 0; i < 200; i++) {
      await writeBytes(e, vmid, (i % 4) * PAGE, filled(i));
      await e.svc.vmWritep(e.ctx, vmid, 0, 4);
      await tick();
    }
    expect(e.ctx.unheardFailures.size).toBe(1);
    expect(b.unheardFailures.size).toBe(1);
    e.svc.endContext(b);
    expect(e.vmm.clients.has(b)).toBe(false);
    await e.svc.vmsDelete(e.ctx, vmid);
    expect(e.ctx.unheardFailures.size).toBe(0);
  });

  it('a failed store is not laundered again: no page-out is tried until it is reopened', async () => {
    const e = await testEngine({ frames: 16, minFree: 8, maxFree: 12 });
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 64 * PAGE);
    for (let p = 0; p < 12; p++) await writeBytes(e, vmid, p * PAGE, filled(p + 1));
    e.store.failed = true;
    const tried = e.store.writeLog.length;
    for (let i = 0; i < 20; i++) {
      e.vmm.pageout.kick();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(e.store.writeLog.length).toBe(tried);
    for (let p = 0; p < 12; p++) expect(await readBytes(e, vmid, p * PAGE, PAGE)).toEqual(filled(p + 1));
  });
});

describe('waits end', () => {
  it('when the client goes, on any segment', async () => {
    const e = await testEngine();
    e.store.readMode = 'manual';
    const vmid = await e.svc.vmsCreate(e.ctx, V_CLIENT, 4 * PAGE);
    const other = secondClient(e, 0);
    const reading = readBytes(e, vmid, 0, PAGE); // a page-in that does not end
    await tick();
    const waiting = e.svc.vmIoaccessp(other, vmid, 0, 1, VM_IOACCESSP_PGINWAIT);
    const readp = e.svc.vmReadp(other, vmid, 0, 1, V_IOWAIT);
    e.svc.endContext(other);
    await expect(waiting).rejects.toMatchObject({ code: 'EINTR', reason: 'interrupted' });
    await expect(readp).rejects.toMatchObject({ code: 'EINTR', reason: 'interrupted' });
    e.store.settleAllReads();
    await reading;
  });

  it('when a V_INTRSEG request is cancelled, and the io level keeps no listener behind', async () => {
    const e = await testEngine();
    e.store.writeMode = 'manual';
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 4 * PAGE, V_INTRSEG);
    await writeBytes(e, vmid, 0, filled(1));
    await e.svc.vmWritep(e.ctx, vmid, 0, 1);
    for (let i = 0; i < 100; i++) {
      const cancel = new AbortController();
      const waiting = e.svc.vmsIowait(e.ctx, vmid, cancel.signal);
      cancel.abort();
      await expect(waiting).rejects.toMatchObject({ code: 'EINTR', reason: 'interrupted' });
    }
    const sleepers = (e.vmm.segments.get(vmid)!.io as unknown as { waiters: { sleepers: Map<unknown, Set<unknown>> } }).waiters.sleepers;
    expect(sleepers.size).toBe(0);
    e.store.settleAllWrites();
  });

  it('with EINVAL when their segment is deleted, and vm_readp pages nothing into it', async () => {
    const e = await testEngine();
    e.store.writeMode = 'manual';
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 32 * PAGE, 0, 0o660);
    const b = secondClient(e);
    await writeBytes(e, vmid, 0, filled(1));
    await e.svc.vmWritep(e.ctx, vmid, 0, 1);
    const readp = e.svc.vmReadp(e.ctx, vmid, 0, 32, V_IOWAIT);
    const iowait = e.svc.vmsIowait(b, vmid);
    await tick();
    await e.svc.vmsDelete(b, vmid);
    await expect(readp).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
    await expect(iowait).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
    e.store.settleAllWrites();
    await tick();
    const t = e.vmm.pool.table;
    for (let f = 0; f < e.vmm.pool.count; f++) if (t.state[f] !== PageState.ABSENT) expect(e.vmm.segments.has(t.vmid[f]), `frame ${f}`).toBe(true);
    expect(e.vmm.frameCensus().free).toBe(e.vmm.pool.count);
  });
});

describe('pinned frames', () => {
  it('one uid past its share gets ENOMEM pinned-limit; another uid still pins and pages', async () => {
    const e = await testEngine({ frames: 32, maxPinnedPerUid: 8 });
    const big = await e.svc.vmsCreate(e.ctx, V_CLIENT, 16 * PAGE, V_LGPAGE);
    for (let p = 0; p < 8; p++) await e.svc.vmMakep(e.ctx, big, p);
    await expect(e.svc.vmMakep(e.ctx, big, 8)).rejects.toMatchObject({ code: 'ENOMEM', reason: 'pinned-limit' });
    await expect(readBytes(e, big, 9 * PAGE, PAGE)).rejects.toMatchObject({ code: 'ENOMEM', reason: 'pinned-limit' });
    const other = e.svc.createContext({ uid: 2000, gid: 2000, pid: 1 });
    const theirs = await e.svc.vmsCreate(other, V_CLIENT, 4 * PAGE, V_LGPAGE);
    await e.svc.vmMakep(other, theirs, 0);
    await e.svc.vmsDelete(e.ctx, big);
    expect(e.vmm.pinnedBy(1000)).toBe(0);
    expect(e.vmm.pinnedBy(2000)).toBe(1);
  });
});

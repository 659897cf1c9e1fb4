import { describe, expect, it } from 'vitest';
import { V_WAITALL, V_WAITERR, V_WORKING } from '../../src/constants.js';
import { PagerError } from '../../src/errors.js';
import { IoLevel } from '../../src/vm/io-level.js';
import { PAGE, filled, frameOf, readBytes, testEngine, tick, writeBytes } from '../support/engine.js';

describe('IoLevel', () => {
  it('advances only over an unbroken prefix of completed page-outs', () => {
    const io = new IoLevel();
    const [a, b, c] = [io.next(), io.next(), io.next()];
    io.complete(c);
    io.complete(b);
    expect(io.completed).toBe(0);
    expect(io.lag).toBe(1);
    io.complete(a);
    expect(io.completed).toBe(3);
    expect(io.lag).toBe(0);
  });

  it('refuses a completion twice or of a number never issued', () => {
    const io = new IoLevel();
    const a = io.next();
    io.complete(a);
    expect(() => io.complete(a)).toThrow(/twice/);
    expect(() => io.complete(5)).toThrow(/never issued/);
  });
});

describe('vms_iowait / vms_iowaitf', () => {
  async function segment() {
    const e = await testEngine();
    e.store.writeMode = 'manual';
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 16 * PAGE);
    return { ...e, vmid };
  }

  it('waits for every page-out initiated before the call, whatever order they complete in', async () => {
    const e = await segment();
    for (let p = 0; p < 3; p++) {
      await writeBytes(e, e.vmid, p * PAGE, filled(p + 1));
      await e.svc.vmWritep(e.ctx, e.vmid, p, 1); // three batches
    }
    let done = false;
    const wait = e.svc.vmsIowait(e.ctx, e.vmid).then(() => (done = true));
    await writeBytes(e, e.vmid, 5 * PAGE, filled(9));
    await e.svc.vmWritep(e.ctx, e.vmid, 5, 1); // initiated after the call: not waited for
    const [first, second, third, later] = e.store.pendingWrites;
    e.store.settleWrite(third);
    e.store.settleWrite(second);
    await tick();
    expect(done).toBe(false);
    e.store.settleWrite(first);
    await wait;
    expect(done).toBe(true);
    expect(e.store.pendingWrites).toEqual([later]);
  });

  it('answers at once when nothing is in flight', async () => {
    const e = await segment();
    await expect(e.svc.vmsIowait(e.ctx, e.vmid)).resolves.toBeUndefined();
  });

  it('reports EIO once, then clears it; the page stays modified and reads its latest bytes', async () => {
    const e = await segment();
    await writeBytes(e, e.vmid, 0, filled(3));
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
    const wait = e.svc.vmsIowait(e.ctx, e.vmid);
    e.store.settleAllWrites(new PagerError('page-out-failed'));
    await expect(wait).rejects.toMatchObject({ code: 'EIO', errno: 5, reason: 'page-out-failed' });
    await expect(e.svc.vmsIowait(e.ctx, e.vmid)).resolves.toBeUndefined();
    const f = frameOf(e, e.vmid, 0);
    expect(e.vmm.isModified(f)).toBe(true);
    expect(e.store.reserved).toBe(1); // the failed batch gave its reservation back
    expect(await readBytes(e, e.vmid, 0, PAGE)).toEqual(filled(3));
    expect(e.store.durable(e.vmid, 0)).toEqual(filled(0));
    // A later page-out writes it again and succeeds.
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
    e.store.settleAllWrites();
    await e.svc.vmsIowait(e.ctx, e.vmid);
    expect(e.store.durable(e.vmid, 0)).toEqual(filled(3));
  });

  it('V_WAITERR answers EIO as soon as a page-out below the level fails; V_WAITALL waits for all first', async () => {
    const e = await segment();
    for (let p = 0; p < 2; p++) {
      await writeBytes(e, e.vmid, p * PAGE, filled(p + 1));
      await e.svc.vmWritep(e.ctx, e.vmid, p, 1);
    }
    let allDone = false;
    const errWait = e.svc.vmsIowaitf(e.ctx, e.vmid, V_WAITERR);
    const allWait = e.svc.vmsIowaitf(e.ctx, e.vmid, V_WAITALL).then(
      () => (allDone = true),
      (err: unknown) => {
        allDone = true;
        throw err;
      },
    );
    e.store.settleWrite(e.store.pendingWrites[1], new PagerError('page-out-failed'));
    await expect(errWait).rejects.toMatchObject({ code: 'EIO' }); // the first page-out is still in flight
    await tick();
    expect(allDone).toBe(false);
    e.store.settleAllWrites();
    // The error was reported once (to the V_WAITERR waiter): the V_WAITALL waiter sees success.
    await expect(allWait).resolves.toBe(true);
  });

  it('answers EINVAL for an unknown segment or flag', async () => {
    const e = await segment();
    await expect(e.svc.vmsIowait(e.ctx, 4711)).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
    await expect(e.svc.vmsIowaitf(e.ctx, e.vmid, 2)).rejects.toMatchObject({ code: 'EINVAL', reason: 'unsupported-flag' });
  });
});

import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, UIO_XMEM, V_CLIENT, V_LGPAGE, V_WORKING } from '../../src/constants.js';
import { PagerError } from '../../src/errors.js';
import { PAGE, filled, readBytes, testEngine, uioOf, writeBytes } from '../support/engine.js';

describe('vm_move', () => {
  async function segment(pages = 8, options: Parameters<typeof testEngine>[0] = {}) {
    const e = await testEngine(options);
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, pages * PAGE);
    return { ...e, vmid };
  }

  it('moves min(limit, resid) bytes and updates resid and offset', async () => {
    const e = await segment();
    const uio = uioOf(filled(1, 100), filled(2, 100));
    uio.offset = 77;
    expect(await e.svc.vmMove(e.ctx, e.vmid, PAGE - 50, 150, UIO_WRITE, uio)).toBe(150);
    expect(uio).toMatchObject({ resid: 50, offset: 227 });
    const back = await readBytes(e, e.vmid, PAGE - 50, 200);
    expect([...back]).toEqual([...filled(1, 100), ...filled(2, 50), ...filled(0, 50)]);
  });

  it('continues from where a previous move left the uio', async () => {
    const e = await segment();
    const src = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    const uio = uioOf(src.subarray(0, 120), src.subarray(120));
    await e.svc.vmUiomove(e.ctx, e.vmid, 100, UIO_WRITE, uio); // at segment offset uio.offset = 0
    await e.svc.vmUiomove(e.ctx, e.vmid, 1000, UIO_WRITE, uio);
    expect(uio).toMatchObject({ resid: 0, offset: 300 });
    expect(await readBytes(e, e.vmid, 0, 300)).toEqual(src);
  });

  it('moves nothing and answers 0 for limit <= 0', async () => {
    const e = await segment();
    const uio = uioOf(filled(1));
    expect(await e.svc.vmMove(e.ctx, e.vmid, 0, 0, UIO_WRITE, uio)).toBe(0);
    expect(await e.svc.vmMove(e.ctx, e.vmid, 0, -5, UIO_WRITE, uio)).toBe(0);
    expect(uio.resid).toBe(PAGE);
    expect(e.vmm.segments.get(e.vmid)!.pages.size).toBe(0);
  });

  it('zero-fills pages that were never written', async () => {
    const e = await segment();
    expect(await readBytes(e, e.vmid, 5 * PAGE + 3, 10)).toEqual(filled(0, 10));
  });

  describe('EFAULT', () => {
    it('answers beyond-extent when the range passes the extent', async () => {
      const e = await segment(2);
      await expect(e.svc.vmMove(e.ctx, e.vmid, 2 * PAGE - 1, 2, UIO_READ, uioOf(new Uint8Array(2)))).rejects.toMatchObject({ code: 'EFAULT', errno: 14, reason: 'beyond-extent' });
      await expect(e.svc.vmMove(e.ctx, e.vmid, -1, 1, UIO_READ, uioOf(new Uint8Array(1)))).rejects.toMatchObject({ reason: 'beyond-extent' });
    });

    it('answers malformed-uio for a malformed uio', async () => {
      const e = await segment();
      const bad = [
        { iov: 'nope', offset: 0, resid: 1, segflg: 0 },
        { iov: [new Uint8Array(4)], offset: 0, resid: 5, segflg: 0 },
        { iov: [new Uint8Array(4)], offset: -1, resid: 4, segflg: 0 },
        { iov: [new Uint8Array(4)], offset: 0, resid: 1.5, segflg: 0 },
        { iov: [[1, 2, 3]], offset: 0, resid: 3, segflg: 0 },
        { iov: [new Uint8Array(4)], offset: 0, resid: 4, segflg: 7 },
      ];
      for (const uio of bad) {
        await expect(e.svc.vmMove(e.ctx, e.vmid, 0, 4, UIO_READ, uio as never)).rejects.toMatchObject({ code: 'EFAULT', reason: 'malformed-uio' });
      }
    });

    it('answers cross-memory for segflg UIO_XMEM', async () => {
      const e = await segment();
      const uio = { ...uioOf(new Uint8Array(4)), segflg: UIO_XMEM };
      await expect(e.svc.vmMove(e.ctx, e.vmid, 0, 4, UIO_READ, uio)).rejects.toMatchObject({ code: 'EFAULT', reason: 'cross-memory' });
    });
  });

  describe('EINVAL', () => {
    it('answers no-such-segment for an unknown vmid', async () => {
      const e = await segment();
      await expect(e.svc.vmMove(e.ctx, 999, 0, 4, UIO_READ, uioOf(new Uint8Array(4)))).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
    });

    it('answers bad-rw for rw other than UIO_READ / UIO_WRITE', async () => {
      const e = await segment();
      await expect(e.svc.vmMove(e.ctx, e.vmid, 0, 4, 2, uioOf(new Uint8Array(4)))).rejects.toMatchObject({ code: 'EINVAL', reason: 'bad-rw' });
    });
  });

  it('answers ENOMEM when no frame can be had within allocTimeoutMs', async () => {
    const e = await testEngine({ frames: 4, minFree: 1, maxFree: 2, allocTimeoutMs: 50 });
    const big = await e.svc.vmsCreate(e.ctx, V_CLIENT, 4 * PAGE, V_LGPAGE); // pinned pages fill the pool
    for (let p = 0; p < 4; p++) await e.svc.vmMakep(e.ctx, big, p);
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, PAGE);
    const uio = uioOf(new Uint8Array(PAGE));
    await expect(e.svc.vmMove(e.ctx, vmid, 0, PAGE, UIO_READ, uio)).rejects.toMatchObject({ code: 'ENOMEM', errno: 12, reason: 'no-frame' });
    expect(uio.resid).toBe(PAGE);
  });

  it('answers ENOSPC before accepting data for a page the store cannot back', async () => {
    const e = await testEngine({ capacitySlots: 2 });
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 4 * PAGE);
    await writeBytes(e, vmid, 0, filled(1));
    await writeBytes(e, vmid, PAGE, filled(2));
    const uio = uioOf(filled(3, 2 * PAGE));
    await expect(e.svc.vmMove(e.ctx, vmid, PAGE + 10, 2 * PAGE, UIO_WRITE, uio)).rejects.toMatchObject({ code: 'ENOSPC', errno: 28, reason: 'no-backing-space' });
    // Bytes into page 1 (already modified, already reserved) were moved; page 2 got nothing.
    expect(uio.resid).toBe(2 * PAGE - (PAGE - 10));
    expect(uio.offset).toBe(PAGE - 10);
    expect(await readBytes(e, vmid, 2 * PAGE, PAGE)).toEqual(filled(0));
    expect(e.store.reserved).toBe(2);
  });

  it('answers EIO when a page-in fails its checksum, never the wrong bytes', async () => {
    const e = await segment();
    await writeBytes(e, e.vmid, 0, filled(4));
    await e.svc.vmFlushp(e.ctx, e.vmid, 0, 1);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    e.store.corrupt.add(`${e.vmid}:0`);
    const buf = new Uint8Array(PAGE);
    const uio = uioOf(buf);
    await expect(e.svc.vmMove(e.ctx, e.vmid, 0, PAGE, UIO_READ, uio)).rejects.toMatchObject({ code: 'EIO', errno: 5, reason: 'checksum-mismatch' });
    expect(buf).toEqual(filled(0));
    expect(uio.resid).toBe(PAGE);
    expect(e.vmm.segments.get(e.vmid)!.pages.size).toBe(0);
  });

  it('answers EIO when a page-in fails, with resid reduced by what moved before it', async () => {
    const e = await segment();
    await writeBytes(e, e.vmid, PAGE, filled(4));
    await e.svc.vmFlushp(e.ctx, e.vmid, 1, 1);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    e.store.readMode = 'manual';
    const uio = uioOf(new Uint8Array(2 * PAGE));
    const moving = e.svc.vmMove(e.ctx, e.vmid, 0, 2 * PAGE, UIO_READ, uio);
    await new Promise((r) => setImmediate(r));
    e.store.settleAllReads(); // page 0 reads fine
    await new Promise((r) => setImmediate(r));
    e.store.settleAllReads(new PagerError('page-in-failed')); // page 1 fails
    await expect(moving).rejects.toMatchObject({ code: 'EIO', reason: 'page-in-failed' });
    expect(uio.resid).toBe(PAGE);
    expect(uio.offset).toBe(PAGE);
  });

  it('answers EACCES for a caller the mode lets see but not write', async () => {
    const e = await segment();
    const other = e.svc.createContext({ uid: 2000, gid: 1000, pid: 1 });
    const shared = await e.svc.vmsCreate(e.ctx, V_WORKING, PAGE, 0, 0o640);
    await expect(e.svc.vmMove(other, shared, 0, 4, UIO_WRITE, uioOf(new Uint8Array(4)))).rejects.toMatchObject({ code: 'EACCES', reason: 'no-write-access' });
    await expect(e.svc.vmMove(other, shared, 0, 4, UIO_READ, uioOf(new Uint8Array(4)))).resolves.toBe(4);
  });

  it('serves a resident page from its frame, with no page-in', async () => {
    const e = await segment();
    await writeBytes(e, e.vmid, 0, filled(1));
    const buf = new Uint8Array(PAGE);
    const uio = uioOf(buf);
    const before = e.vmm.counters.misses;
    for (let i = 0; i < 100; i++) {
      uio.resid = PAGE;
      await e.svc.vmMove(e.ctx, e.vmid, 0, PAGE, UIO_READ, uio);
    }
    expect(e.vmm.counters.misses).toBe(before);
    expect(buf).toEqual(filled(1));
  });
});

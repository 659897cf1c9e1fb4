import { describe, expect, it } from 'vitest';
import { V_CLIENT, V_INTRSEG, V_LARGE, V_LGPAGE, V_PERSISTENT, V_WORKING } from '../../src/constants.js';
import { PAGE, filled, frameOf, readBytes, testEngine, tick, writeBytes } from '../support/engine.js';

describe('vms_create', () => {
  it('rounds the size up to whole pages and records owner and mode', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_PERSISTENT, PAGE + 1, V_INTRSEG, 0o640);
    expect(e.vmm.segments.get(vmid)!.record).toEqual({ vmid, type: V_PERSISTENT, options: V_INTRSEG, extent: 2 * PAGE, uid: 1000, gid: 1000, mode: 0o640 });
    expect(await e.store.loadSegments()).toHaveLength(1);
  });

  it('answers EINVAL for a bad type, option, size or mode', async () => {
    const e = await testEngine();
    await expect(e.svc.vmsCreate(e.ctx, 3, PAGE)).rejects.toMatchObject({ code: 'EINVAL', reason: 'bad-type' });
    await expect(e.svc.vmsCreate(e.ctx, V_WORKING, PAGE, 0x1)).rejects.toMatchObject({ reason: 'bad-option' });
    // Past 31 bits: refused whole, not cut to the low 32 (2^32 + V_INTRSEG would read as V_INTRSEG).
    for (const options of [2 ** 32, 2 ** 32 + V_INTRSEG, 2 ** 40]) await expect(e.svc.vmsCreate(e.ctx, V_WORKING, PAGE, options)).rejects.toMatchObject({ reason: 'bad-option' });
    await expect(e.svc.vmsCreate(e.ctx, V_WORKING, -1)).rejects.toMatchObject({ reason: 'bad-size' });
    await expect(e.svc.vmsCreate(e.ctx, V_WORKING, 2 ** 31 + 1)).rejects.toMatchObject({ reason: 'bad-size' });
    await expect(e.svc.vmsCreate(e.ctx, V_WORKING, PAGE, 0, 0o1000)).rejects.toMatchObject({ reason: 'bad-mode' });
    expect(await e.store.loadSegments()).toHaveLength(0);
  });

  it('allows 2 GiB, and up to 2^44 - page size with V_LARGE', async () => {
    const e = await testEngine();
    await expect(e.svc.vmsCreate(e.ctx, V_WORKING, 2 ** 31)).resolves.toBeGreaterThan(0);
    await expect(e.svc.vmsCreate(e.ctx, V_WORKING, 2 ** 44 - PAGE, V_LARGE)).resolves.toBeGreaterThan(0);
    await expect(e.svc.vmsCreate(e.ctx, V_WORKING, 2 ** 44 - PAGE + 1, V_LARGE)).rejects.toMatchObject({ reason: 'bad-size' });
  });

  it('reaches the last page of a 2^44 - page size segment', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 2 ** 44 - PAGE, V_LARGE);
    const last = 2 ** 44 - 2 * PAGE;
    await writeBytes(e, vmid, last, filled(9));
    await e.svc.vmWritep(e.ctx, vmid, last / PAGE, 1);
    await e.svc.vmsIowait(e.ctx, vmid);
    expect(e.store.writeLog).toEqual([{ vmid, pno: 2 ** 32 - 2 }]);
    expect(await readBytes(e, vmid, last, PAGE)).toEqual(filled(9));
  });
});

describe('vms_delete', () => {
  it('invalidates the vmid at once, discards modified pages without writing, frees frames in I/O at completion', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 4 * PAGE);
    const vaddr = e.svc.vmAtt(e.ctx, vmid, 0);
    e.store.writeMode = 'manual';
    await writeBytes(e, vmid, 0, filled(1));
    await e.svc.vmWritep(e.ctx, vmid, 0, 1);
    await writeBytes(e, vmid, PAGE, filled(2));
    const f0 = frameOf(e, vmid, 0);
    const free = e.vmm.pool.freeCount;
    await e.svc.vmsDelete(e.ctx, vmid);
    expect(() => e.svc.vmQpages(e.ctx, vmid)).toThrow(expect.objectContaining({ reason: 'no-such-segment' }));
    await expect(e.svc.vmWrite(e.ctx, vaddr, PAGE, 1)).rejects.toMatchObject({ reason: 'region-not-defined' });
    expect(e.vmm.pool.freeCount).toBe(free + 1); // the modified page's frame
    expect(e.store.reserved).toBe(0);
    e.store.settleAllWrites();
    await tick();
    expect(e.vmm.pool.freeCount).toBe(free + 2); // the frame in page-out, at completion
    expect(e.vmm.pool.table.state[f0]).toBe(0);
    expect(e.store.durable(vmid, 0)).toEqual(filled(0));
    expect(e.store.writeLog.map((w) => w.pno)).toEqual([0]);
  });

  it('stops a move waiting on the segment with EINVAL', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 4 * PAGE);
    e.store.readMode = 'manual';
    const reading = readBytes(e, vmid, 0, PAGE);
    await tick();
    await e.svc.vmsDelete(e.ctx, vmid);
    e.store.settleAllReads();
    await expect(reading).rejects.toMatchObject({ reason: 'no-such-segment' });
  });
});

describe('vm_att, vm_det, io_att', () => {
  it('maps the 256 MiB window holding the offset and answers the address of the offset', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, 0x30000000);
    const a = e.svc.vmAtt(e.ctx, vmid, 0x10000000 + 5 * PAGE + 7);
    expect(a % 0x10000000).toBe(5 * PAGE + 7);
    const b = e.svc.vmAtt(e.ctx, vmid, 0);
    expect(Math.floor(b / 0x10000000)).not.toBe(Math.floor(a / 0x10000000));
    await writeBytes(e, vmid, 0x10000000 + 5 * PAGE, filled(4));
    e.store.writeMode = 'manual';
    await e.svc.vmWrite(e.ctx, a - 7, PAGE, 1);
    expect(e.store.writeLog).toEqual([{ vmid, pno: 0x10000 + 5 }]);
    e.svc.vmDet(e.ctx, a);
    await expect(e.svc.vmWrite(e.ctx, a, 1, 1)).rejects.toMatchObject({ reason: 'region-not-defined' });
    expect(() => e.svc.vmDet(e.ctx, a)).toThrow(expect.objectContaining({ reason: 'region-not-defined' }));
  });

  it('refuses a bad access, an unknown segment, an offset past the extent, and runs out of regions with ENOMEM', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, PAGE);
    expect(() => e.svc.vmAtt(e.ctx, vmid, 0, 'rw' as never)).toThrow(expect.objectContaining({ reason: 'bad-access' }));
    expect(() => e.svc.vmAtt(e.ctx, 4711, 0)).toThrow(expect.objectContaining({ reason: 'no-such-segment' }));
    expect(() => e.svc.vmAtt(e.ctx, vmid, PAGE)).toThrow(expect.objectContaining({ reason: 'offset-beyond-extent' }));
    for (let i = 1; i < 256; i++) e.svc.vmAtt(e.ctx, vmid, 0);
    expect(() => e.svc.vmAtt(e.ctx, vmid, 0)).toThrow(expect.objectContaining({ code: 'ENOMEM', reason: 'no-free-region' }));
  });

  it('io_att refuses zero bytes or more than one region', async () => {
    const e = await testEngine();
    expect(() => e.svc.ioAtt(e.ctx, 0)).toThrow(expect.objectContaining({ reason: 'region-too-large' }));
    expect(() => e.svc.ioAtt(e.ctx, 0x10000001)).toThrow(expect.objectContaining({ reason: 'region-too-large' }));
  });
});

describe('access by mode', () => {
  it('hides a 0600 segment from another uid exactly like a nonexistent one; root sees everything', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, PAGE);
    const stranger = e.svc.createContext({ uid: 2000, gid: 2000, pid: 2 });
    const root = e.svc.createContext({ uid: 0, gid: 0, pid: 3 });
    const missing = 4711;
    for (const id of [vmid, missing]) {
      expect(() => e.svc.vmAtt(stranger, id, 0, 'read')).toThrow(expect.objectContaining({ code: 'EINVAL', reason: 'no-such-segment' }));
      await expect(readBytes({ ...e, ctx: stranger }, id, 0, 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
      await expect(e.svc.vmsDelete(stranger, id)).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
    }
    expect(e.svc.vmAtt(root, vmid, 0)).toBeGreaterThan(0);
  });

  it('lets the group read a 0640 segment but not attach it for writing', async () => {
    const e = await testEngine();
    const vmid = await e.svc.vmsCreate(e.ctx, V_CLIENT, PAGE, 0, 0o640);
    const peer = e.svc.createContext({ uid: 2000, gid: 1000, pid: 2 });
    expect(e.svc.vmAtt(peer, vmid, 0, 'read')).toBeGreaterThan(0);
    expect(() => e.svc.vmAtt(peer, vmid, 0, 'write')).toThrow(expect.objectContaining({ code: 'EACCES', reason: 'no-write-access' }));
    await expect(e.svc.vmsDelete(peer, vmid)).rejects.toMatchObject({ code: 'EACCES' });
    await expect(e.svc.vmWritep(peer, vmid, 0, 1)).rejects.toMatchObject({ code: 'EACCES' });
  });

  it('keeps large-page segments pinned: their frames are never stolen', async () => {
    const e = await testEngine({ frames: 8, minFree: 2, maxFree: 4, allocTimeoutMs: 50 });
    const big = await e.svc.vmsCreate(e.ctx, V_CLIENT, 4 * PAGE, V_LGPAGE);
    for (let p = 0; p < 4; p++) await e.svc.vmMakep(e.ctx, big, p);
    const other = await e.svc.vmsCreate(e.ctx, V_WORKING, 64 * PAGE);
    for (let p = 0; p < 64; p++) await readBytes(e, other, p * PAGE, 1);
    expect(e.svc.vmQpages(e.ctx, big)).toBe(4);
    expect(e.store.reserved).toBe(0);
  });
});

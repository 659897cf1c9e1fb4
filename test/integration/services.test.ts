import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  UIO_READ,
  UIO_WRITE,
  UIO_XMEM,
  V_CLIENT,
  V_LGPAGE,
  V_WAITALL,
  V_WORKING,
  VM_IOACCESSP_FLUSH,
  VM_IOACCESSP_MAKE,
  VM_IOACCESSP_PGINWAIT,
  VM_IOACCESSP_PGOUTWAIT,
  VM_IOACCESSP_WAITONLY,
  type PagerClient,
} from '../../src/client/index.js';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';

const PAGE = 4096;
const page = (byte: number, n = PAGE) => new Uint8Array(n).fill(byte);
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

let daemon: RunningDaemon;
let c: PagerClient;

beforeAll(async () => {
  daemon = await startDaemon();
  c = await daemon.client();
});

afterAll(async () => {
  await c?.close();
  expect(await daemon.stop()).toBe(0);
});

async function read(vmid: number, offset: number, n: number): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  await c.vmMove(vmid, offset, n, UIO_READ, uio(buf));
  return buf;
}

describe('every service through the real daemon', () => {
  it('vms_create, vm_move both ways (split across requests when large), vm_uiomove', async () => {
    const vmid = await c.vmsCreate(V_WORKING, 8 << 20);
    const big = Uint8Array.from({ length: 5 << 20 }, (_, i) => (i * 7) & 0xff);
    const w = uio(big);
    expect(await c.vmMove(vmid, 12345, big.length, UIO_WRITE, w)).toBe(big.length);
    expect(w).toMatchObject({ resid: 0, offset: big.length });
    expect(Buffer.from(await read(vmid, 12345, big.length)).equals(big)).toBe(true);
    const u = { iov: [page(3, 100), page(4, 100)], offset: 50, resid: 200, segflg: 0 };
    expect(await c.vmUiomove(vmid, 150, UIO_WRITE, u)).toBe(150);
    expect(u).toMatchObject({ offset: 200, resid: 50 });
    expect([...(await read(vmid, 50, 150))]).toEqual([...page(3, 100), ...page(4, 50)]);
  });

  it('vm_att, vm_write + vms_iowait, vm_release, vm_det, io_att', async () => {
    const vmid = await c.vmsCreate(V_WORKING, 4 * PAGE);
    const vaddr = await c.vmAtt(vmid, 0);
    await c.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(page(9)));
    await c.vmWrite(vaddr, PAGE, 1);
    await c.vmsIowait(vmid);
    expect(await c.vmQmodify(vmid)).toBe(true); // the segment bit: a page was written out
    expect(await c.vmQmodify(vmid)).toBe(false);
    await c.vmRelease(vaddr, PAGE);
    expect(await read(vmid, 0, PAGE)).toEqual(page(0));
    await c.vmDet(vaddr);
    await expect(c.vmWrite(vaddr, PAGE, 1)).rejects.toMatchObject({ code: 'EINVAL', errno: 22, reason: 'region-not-defined' });
    const io = await c.ioAtt(PAGE);
    await expect(c.vmRelease(io, PAGE)).rejects.toMatchObject({ code: 'EINVAL', reason: 'io-region' });
  });

  it("answers every vm_write / vm_release error of the seed pages", async () => {
    const vmid = await c.vmsCreate(V_WORKING, 2 * PAGE);
    const vaddr = await c.vmAtt(vmid, 0);
    const ro = await c.vmAtt(vmid, 0, 'read');
    const big = await c.vmsCreate(V_CLIENT, PAGE, V_LGPAGE);
    const lg = await c.vmAtt(big, 0);
    for (const call of [(a: number, n: number) => c.vmWrite(a, n, 1), (a: number, n: number) => c.vmRelease(a, n)]) {
      await expect(call(0x7000_0000 * 3, PAGE)).rejects.toMatchObject({ code: 'EINVAL', reason: 'region-not-defined' });
      await expect(call(await c.ioAtt(16), 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'io-region' });
      await expect(call(vaddr, -1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'negative-length' });
      await expect(call(vaddr + PAGE, PAGE + 1)).rejects.toMatchObject({ code: 'EINVAL', reason: 'crosses-object-boundary' });
      await expect(call(lg, PAGE)).rejects.toMatchObject({ code: 'EINVAL', reason: 'large-pages' });
      await expect(call(ro, PAGE)).rejects.toMatchObject({ code: 'EACCES', errno: 13, reason: 'no-write-access' });
    }
  });

  it("answers every vm_move error of the seed page", async () => {
    const vmid = await c.vmsCreate(V_WORKING, PAGE);
    await expect(c.vmMove(vmid, PAGE - 1, 2, UIO_READ, uio(new Uint8Array(2)))).rejects.toMatchObject({ code: 'EFAULT', errno: 14, reason: 'beyond-extent' });
    await expect(c.vmMove(vmid, 0, 4, UIO_READ, { iov: [new Uint8Array(2)], offset: 0, resid: 4, segflg: 0 })).rejects.toMatchObject({ code: 'EFAULT', reason: 'malformed-uio' });
    await expect(c.vmMove(vmid, 0, 4, UIO_READ, { ...uio(new Uint8Array(4)), segflg: UIO_XMEM })).rejects.toMatchObject({ code: 'EFAULT', reason: 'cross-memory' });
    await expect(c.vmMove(999_999, 0, 4, UIO_READ, uio(new Uint8Array(4)))).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
    await expect(c.vmMove(vmid, 0, 4, 7, uio(new Uint8Array(4)))).rejects.toMatchObject({ code: 'EINVAL', reason: 'bad-rw' });
    expect(await c.vmMove(vmid, 0, 0, UIO_WRITE, uio(new Uint8Array(4)))).toBe(0);
  });

  it('answers ENOMEM pinned-limit once a uid pins its share of the pool, and frames stay for the rest', async () => {
    // 4 MiB pool = 1024 frames; one uid may pin half (memory.maxPinnedShare 0.5).
    const big = await c.vmsCreate(V_CLIENT, 1024 * PAGE, V_LGPAGE);
    const pinned: Promise<void>[] = [];
    for (let p = 0; p < 512; p++) pinned.push(c.vmMakep(big, p));
    await Promise.all(pinned);
    await expect(c.vmMakep(big, 512)).rejects.toMatchObject({ code: 'ENOMEM', errno: 12, reason: 'pinned-limit' });
    expect(await c.vmQpages(big)).toBe(512);
    const vmid = await c.vmsCreate(V_WORKING, 64 * PAGE);
    await c.vmMove(vmid, 0, 64 * PAGE, UIO_WRITE, uio(page(3, 64 * PAGE)));
    expect(await read(vmid, 0, 64 * PAGE)).toEqual(page(3, 64 * PAGE));
    await c.vmsDelete(big);
    const again = await c.vmsCreate(V_CLIENT, PAGE, V_LGPAGE);
    await c.vmMakep(again, 0); // the share came back with the frames
    await c.vmsDelete(again);
  }, 30_000);

  it('vm_ioaccessp with each flag, and its EINVAL checks', async () => {
    const vmid = await c.vmsCreate(V_CLIENT, 512 * PAGE);
    await c.vmMove(vmid, 0, 2 * PAGE, UIO_WRITE, uio(page(5, 2 * PAGE)));
    await c.vmIoaccessp(vmid, 0, 2, VM_IOACCESSP_FLUSH | VM_IOACCESSP_PGOUTWAIT);
    expect(await c.vmQpages(vmid)).toBe(0);
    await c.vmIoaccessp(vmid, 0, 4, VM_IOACCESSP_MAKE | VM_IOACCESSP_PGINWAIT);
    expect(await c.vmQpages(vmid)).toBe(4);
    await c.vmIoaccessp(vmid, 0, 4, VM_IOACCESSP_WAITONLY | VM_IOACCESSP_PGINWAIT);
    expect(await read(vmid, 0, PAGE)).toEqual(page(5));
    for (const [args, reason] of [
      [[vmid, 0, 0, VM_IOACCESSP_MAKE], 'zero-range'],
      [[vmid, -1, 1, VM_IOACCESSP_MAKE], 'negative-page'],
      [[vmid, 1, -1, VM_IOACCESSP_MAKE], 'negative-count'],
      [[424242, 0, 1, VM_IOACCESSP_MAKE], 'no-such-segment'],
      [[vmid, 510, 5, VM_IOACCESSP_MAKE], 'range-beyond-extent'],
      [[vmid, 0, 257, VM_IOACCESSP_MAKE], 'make-too-large'],
      [[vmid, 0, 1, 0x40], 'unsupported-flag'],
      [[vmid, 0, 1, VM_IOACCESSP_MAKE | VM_IOACCESSP_FLUSH], 'make-and-flush'],
      [[vmid, 0, 1, VM_IOACCESSP_WAITONLY], 'waitonly-without-wait'],
      [[vmid, 0, 1, VM_IOACCESSP_WAITONLY | VM_IOACCESSP_PGINWAIT | VM_IOACCESSP_MAKE], 'waitonly-with-action'],
    ] as const) {
      await expect(c.vmIoaccessp(...(args as unknown as [number, number, number, number]))).rejects.toMatchObject({ code: 'EINVAL', reason });
    }
    const working = await c.vmsCreate(V_WORKING, PAGE);
    await expect(c.vmIoaccessp(working, 0, 1, VM_IOACCESSP_MAKE)).rejects.toMatchObject({ reason: 'not-client-segment' });
  });

  it('the page-range services, vm_makep, vm_qpages, vms_iowaitf and vms_delete', async () => {
    const vmid = await c.vmsCreate(V_CLIENT, 8 * PAGE);
    await c.vmMakep(vmid, 2);
    expect(await c.vmQpages(vmid)).toBe(1);
    await c.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(page(1)));
    await c.vmWritep(vmid, 0, 8);
    await c.vmsIowaitf(vmid, V_WAITALL);
    await c.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(page(2)));
    await c.vmInvalidatep(vmid, 0, 1);
    expect(await read(vmid, 0, PAGE)).toEqual(page(1));
    await c.vmReleasep(vmid, 0, 1);
    expect(await read(vmid, 0, PAGE)).toEqual(page(0));
    await c.vmFlushp(vmid, 0, 8);
    await c.vmReadp(vmid, 0, 4, 1);
    await expect(c.vmWritep(vmid, 0, 0)).rejects.toMatchObject({ code: 'EINVAL', reason: 'zero-range' });
    await c.vmsDelete(vmid);
    await expect(c.vmQpages(vmid)).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
    const mine = await c.segments();
    expect(mine.some((s) => s.vmid === vmid)).toBe(false);
  });

  it('serves pipelined requests out of order', async () => {
    const vmid = await c.vmsCreate(V_WORKING, 64 * PAGE);
    const writes = Array.from({ length: 64 }, (_, p) => c.vmMove(vmid, p * PAGE, PAGE, UIO_WRITE, uio(page(p + 1))));
    expect(await Promise.all(writes)).toEqual(new Array(64).fill(PAGE));
    const reads = await Promise.all(Array.from({ length: 64 }, (_, p) => read(vmid, p * PAGE, PAGE)));
    reads.forEach((r, p) => expect(r).toEqual(page(p + 1)));
  });

  it('stats, metrics and verify', async () => {
    const stats = await c.stats();
    expect(stats).toMatchObject({ pageSize: PAGE, frames: 1024 });
    const metrics = await c.metrics();
    expect(metrics).toMatch(/pagerd_page_outs_total \d+/);
    expect(metrics).toMatch(/pagerd_request_seconds_bucket\{.*op="vmMove"/);
    for (const op of ['writev', 'datasync', 'commit', 'read']) expect(metrics).toMatch(new RegExp(`pagerd_device_io_seconds_count\\{op="${op}"\\} [1-9]`));
    expect(await c.verify()).toMatchObject({ ok: true });
  });
});

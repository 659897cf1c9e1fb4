import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_CLIENT, V_WORKING, VM_IOACCESSP_MAKE, type PagerClient, type StrategyRequest } from '../../src/client/index.js';
import { Kind, encodeRequestFrame, encodeStrategyDoneFrame, type StrategyIo } from '../../src/protocol/codec.js';
import { deleteClientSegments } from '../support/client-segments.js';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';
import { RawConnection } from '../support/raw-connection.js';

const PAGE = 4096;
const MiB = 1 << 20;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

/** A file system in memory: its pages, and every request its strategy served. */
function memoryFileSystem(): { pages: Map<string, Uint8Array>; served: StrategyRequest[]; strategy: (io: StrategyRequest) => Promise<void> } {
  const pages = new Map<string, Uint8Array>();
  const served: StrategyRequest[] = [];
  return {
    pages,
    served,
    strategy: async (io) => {
      served.push({ ...io, data: new Uint8Array(0) });
      for (let i = 0; i < io.npages; i++) {
        const key = `${io.vmid}:${io.page + i}`;
        const bytes = io.data.subarray(i * PAGE, (i + 1) * PAGE);
        if (io.op === 'read') bytes.set(pages.get(key) ?? new Uint8Array(PAGE));
        else pages.set(key, Uint8Array.from(bytes));
      }
    },
  };
}

function pattern(vmid: number, pno: number): Uint8Array {
  const out = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i += 4) new DataView(out.buffer).setUint32(i, (vmid * 1_000_003 + pno * 7919 + i) >>> 0, true);
  return out;
}

/** Calls over a raw connection: each request waits for its reply, answers its first result, and throws an error reply. */
function rawCaller(raw: RawConnection): (op: 'vmMounte' | 'vmsCreateOn' | 'vmUmount' | 'vmsDelete', args: number[]) => Promise<number | undefined> {
  let id = 1;
  return async (op, args) => {
    const mine = id++;
    raw.send(encodeRequestFrame({ id: mine, op, args }));
    await raw.until(() => raw.replies.some((r) => r.id === mine), 5000);
    const reply = raw.replies.find((r) => r.id === mine)!;
    if (reply.error) throw new Error(`${reply.error.code} ${reply.error.reason}`);
    return reply.results[0] as number | undefined;
  };
}

/**
 * A file system spoken to byte by byte: a raw connection that mounts a paging device, creates a
 * client segment of `pages` pages on it (mode 0666) and answers every page-in with zeros; its
 * page-outs are left to the test (raw.strategyRequests).
 */
async function rawFileSystem(socket: string, pages: number): Promise<{ raw: RawConnection; device: number; vmid: number }> {
  const raw = await RawConnection.open(socket);
  const call = rawCaller(raw);
  const device = (await call('vmMounte', []))!;
  const vmid = (await call('vmsCreateOn', [V_CLIENT, pages * PAGE, 0, 0o666, device]))!;
  let answered = 0;
  raw.socket.on('data', () => {
    for (; answered < raw.strategyRequests.length; answered++) {
      const io = raw.strategyRequests[answered];
      if (io.op === 'read') raw.send(encodeStrategyDoneFrame({ id: io.id, errno: 0, data: new Uint8Array(io.npages * PAGE) }));
    }
  });
  return { raw, device, vmid };
}

/** A file system that answers no page-out holding half the pool modified: past the default share, its writer would wait for it. */
const WHOLE_POOL_MODIFIABLE = { PAGERD_STRATEGY_MAX_MODIFIED_SHARE: '1', PAGERD_STRATEGY_MAX_MODIFIED_TOTAL_SHARE: '1' };

let daemon: RunningDaemon;
beforeAll(async () => {
  // Half the pool for root's client segments: tests here hold up to 1024 pages modified or being
  // written at once (512 written out and rewritten meanwhile), beside what earlier tests strand.
  // The share itself is tested in strategy-modified-share.test.ts.
  daemon = await startDaemon({ memory: '16MiB', env: { PAGERD_STRATEGY_TIMEOUT_MS: '1500', PAGERD_STRATEGY_MAX_MODIFIED_SHARE: '0.5' } });
});
afterAll(async () => {
  await deleteClientSegments(daemon);
  expect(await daemon.stop()).toBe(0);
});

describe('client segments paged by their own file system (strategy routines)', () => {
  it('a 64 MiB client segment through a 16 MiB pool reads back exactly; its page-outs reach the strategy, none reach pagerd\'s store', async () => {
    const fs = memoryFileSystem();
    const c = await daemon.client();
    const device = await c.vmMounte(fs.strategy);
    expect(device).toBeGreaterThan(0);
    const vmid = await c.vmsCreate(V_CLIENT, 64 * MiB, { device });
    const before = (await c.stats()) as { slots: { mapped: number } };
    const pages = (64 * MiB) / PAGE;
    for (let pno = 0; pno < pages; pno += 64) {
      const chunk = new Uint8Array(64 * PAGE);
      for (let i = 0; i < 64; i++) chunk.set(pattern(vmid, pno + i), i * PAGE);
      await c.vmMove(vmid, pno * PAGE, chunk.length, UIO_WRITE, uio(chunk));
    }
    for (let pno = 0; pno < pages; pno += 64) {
      const chunk = new Uint8Array(64 * PAGE);
      await c.vmMove(vmid, pno * PAGE, chunk.length, UIO_READ, uio(chunk));
      for (let i = 0; i < 64; i++) if (!Buffer.from(chunk.subarray(i * PAGE, (i + 1) * PAGE)).equals(pattern(vmid, pno + i))) throw new Error(`page ${pno + i} read back wrong`);
    }
    await c.vmWritep(vmid, 0, pages);
    await c.vmsIowait(vmid);
    expect(fs.pages.size).toBe(pages); // every page reached the file system
    expect(Buffer.from(fs.pages.get(`${vmid}:${pages - 1}`)!).equals(pattern(vmid, pages - 1))).toBe(true);
    expect(fs.served.some((io) => io.op === 'write' && io.npages > 1)).toBe(true); // contiguous pages travel together
    expect(fs.served.some((io) => io.op === 'read')).toBe(true); // pages stolen and read back
    expect(((await c.stats()) as { slots: { mapped: number } }).slots.mapped).toBe(before.slots.mapped);
    expect(await c.devices()).toEqual([expect.objectContaining({ id: device, alive: true, segments: [vmid] })]);
    await expect(c.vmUmount(device)).rejects.toMatchObject({ code: 'EBUSY', reason: 'device-busy' });
    await c.vmsDelete(vmid);
    await c.vmUmount(device);
    expect(await c.devices()).toEqual([]);
    await c.close();
  }, 120_000);

  it("a strategy's errno (ESTALE) reaches vm_move's caller unchanged; an error without one is EIO", async () => {
    const c = await daemon.client();
    let fail: Error = Object.assign(new Error('stale handle'), { errno: 116 });
    const device = await c.vmMounte(async () => {
      throw fail;
    });
    const vmid = await c.vmsCreate(V_CLIENT, 16 * PAGE, { device });
    const read = (): Promise<number> => c.vmMove(vmid, 0, PAGE, UIO_READ, uio(new Uint8Array(PAGE)));
    await expect(read()).rejects.toMatchObject({ name: 'PagerError', code: 'ESTALE', errno: 116, reason: 'file-system-error' });
    fail = new Error('no errno');
    await expect(read()).rejects.toMatchObject({ code: 'EIO', errno: 5, reason: 'file-system-error' });
    fail = Object.assign(new Error('a Node error'), { code: 'ENOSPC', errno: -28 });
    await c.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(1))); // a whole page: no page-in
    await c.vmWritep(vmid, 0, 1);
    await expect(c.vmsIowait(vmid)).rejects.toMatchObject({ code: 'ENOSPC', errno: 28 });
    await c.close();
  });

  it('a strategy that never answers, then disconnects: the waiting read fails with EIO at once; a timeout fails one that stays', async () => {
    const mounter = await daemon.client();
    const reader = await daemon.client();
    let asked!: () => void;
    const askedOnce = new Promise<void>((resolve) => (asked = resolve));
    const device = await mounter.vmMounte(() => {
      asked();
      return new Promise(() => undefined); // never answers
    });
    const vmid = await mounter.vmsCreate(V_CLIENT, 16 * PAGE, { device, mode: 0o666 });
    const waiting = reader.vmMove(vmid, 0, PAGE, UIO_READ, uio(new Uint8Array(PAGE)));
    waiting.catch(() => undefined);
    await askedOnce;
    const started = Date.now();
    await mounter.close();
    await expect(waiting).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' });
    expect(Date.now() - started).toBeLessThan(1000);
    // Bound to a device whose connection is gone: later I/O fails at once, nothing waits.
    await expect(reader.vmMove(vmid, PAGE, PAGE, UIO_READ, uio(new Uint8Array(PAGE)))).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' });

    const silent = await daemon.client();
    const device2 = await silent.vmMounte(() => new Promise(() => undefined));
    const vmid2 = await silent.vmsCreate(V_CLIENT, 16 * PAGE, { device: device2 });
    const t0 = Date.now();
    await expect(silent.vmMove(vmid2, 0, PAGE, UIO_READ, uio(new Uint8Array(PAGE)))).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400); // PAGERD_STRATEGY_TIMEOUT_MS=1500
    await silent.close();
    await reader.close();
  });

  it('a strategy that calls services while it serves a page-in (its own connection, other segments) does not deadlock', async () => {
    const c = await daemon.client();
    const other = await c.vmsCreate(V_WORKING, 4 * PAGE);
    await c.vmMove(other, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(9)));
    const device = await c.vmMounte(async (io) => {
      // Read-ahead style work from inside the routine: a move on another segment and a query.
      const peek = new Uint8Array(PAGE);
      await c.vmMove(other, 0, PAGE, UIO_READ, uio(peek));
      await c.vmQpages(other);
      io.data.fill(peek[0]);
    });
    const vmid = await c.vmsCreate(V_CLIENT, 8 * PAGE, { device });
    const got = new Uint8Array(4 * PAGE);
    await c.vmMove(vmid, 0, got.length, UIO_READ, uio(got));
    expect(got.every((b) => b === 9)).toBe(true);
    // MAKE (vm_ioaccessp) on a client segment: pages made, then filled by the strategy.
    await c.vmIoaccessp(vmid, 4, 2, VM_IOACCESSP_MAKE);
    await c.close();
  });

  it('a call that would wait on a page its own strategy is reading right now answers EDEADLK at once', async () => {
    const c = await daemon.client();
    let vmid = 0;
    let seen: unknown;
    const device = await c.vmMounte(async (io) => {
      // Waiting for the very page this routine is asked to read would wait for itself.
      seen = await c.vmMove(vmid, io.page * PAGE, PAGE, UIO_READ, uio(new Uint8Array(PAGE))).catch((err: unknown) => err);
      io.data.fill(5);
    });
    vmid = await c.vmsCreate(V_CLIENT, 4 * PAGE, { device });
    const other = await daemon.client(); // another connection's read of the page waits, as any would
    const got = new Uint8Array(PAGE);
    const started = Date.now();
    await other.vmMove(vmid, 0, PAGE, UIO_READ, uio(got));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(seen).toMatchObject({ code: 'EDEADLK', errno: 35, reason: 'deadlock' });
    expect(got.every((b) => b === 5)).toBe(true);
    await other.close();
    await c.close();
  });

  it("deleting a client segment with modified pages, or with a page-out at its strategy, leaves pagerd's own accounting as it was", async () => {
    const c = await daemon.client();
    const slots = async (): Promise<{ reserved: number; mapped: number }> => ((await c.stats()) as { slots: { reserved: number; mapped: number } }).slots;
    const before = await slots();
    let release!: () => void;
    const slow = new Promise<void>((resolve) => (release = resolve));
    const device = await c.vmMounte(async (io) => {
      if (io.op === 'write') await slow;
    });
    const a = await c.vmsCreate(V_CLIENT, 8 * PAGE, { device });
    for (let p = 0; p < 8; p++) await c.vmMove(a, p * PAGE, PAGE, UIO_WRITE, uio(pattern(a, p)));
    await c.vmsDelete(a); // eight modified pages discarded
    const b = await c.vmsCreate(V_CLIENT, 8 * PAGE, { device });
    for (let p = 0; p < 8; p++) await c.vmMove(b, p * PAGE, PAGE, UIO_WRITE, uio(pattern(b, p)));
    await c.vmWritep(b, 0, 8); // at the strategy, which holds it
    await c.vmsDelete(b);
    release(); // the page-out settles after the delete
    await new Promise((r) => setTimeout(r, 200));
    expect(await slots()).toMatchObject({ reserved: before.reserved, mapped: before.mapped });
    // The daemon pages on: a working segment's page-out, and another client segment's.
    const w = await c.vmsCreate(V_WORKING, 4 * PAGE);
    await c.vmMove(w, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(1)));
    await c.vmWritep(w, 0, 1);
    await c.vmsIowait(w);
    expect(daemon.proc.exitCode).toBeNull();
    await c.vmsDelete(w);
    await c.vmUmount(device);
    await c.close();
  });

  it('a device gone strands its segments\' modified pages: up to strategy.maxStrandedShare of the pool, then ENOMEM; a new device takes them over', async () => {
    const own = await startDaemon({ memory: '1MiB', env: { PAGERD_STRATEGY_MAX_STRANDED_SHARE: '0.03125' } }); // a cap of 8 of its 256 frames
    const mounter = await own.client();
    const writer = await own.client();
    const vmid = await mounter.vmsCreate(V_CLIENT, 32 * PAGE, { device: await mounter.vmMounte(memoryFileSystem().strategy), mode: 0o666 });
    const write = (pno: number): Promise<number> => writer.vmMove(vmid, pno * PAGE, PAGE, UIO_WRITE, uio(pattern(vmid, pno)));
    for (let p = 0; p < 4; p++) await write(p);
    await mounter.close(); // the file system's connection goes: its device with it
    await new Promise((r) => setTimeout(r, 100));
    for (let p = 4; p < 8; p++) await write(p); // 8 modified pages: the cap
    await expect(write(8)).rejects.toMatchObject({ code: 'ENOMEM', reason: 'stranded-pages' });
    expect(((await writer.segments()).find((s) => s.vmid === vmid))?.device).toBe(1);
    const fs = memoryFileSystem();
    const rescuer = await own.client();
    await rescuer.vmSetdevid(vmid, await rescuer.vmMounte(fs.strategy));
    await write(8);
    await writer.vmWritep(vmid, 0, 32);
    await writer.vmsIowait(vmid);
    expect(fs.pages.size).toBe(9); // every stranded page written through the new device
    await writer.close();
    await rescuer.close();
    expect(await own.stop()).toBe(0);
  });

  it('after a restart a client segment keeps its record, answers EIO until its file system rebinds it, then pages through the new device', async () => {
    const own = await startDaemon({ memory: '1MiB' });
    const fs = memoryFileSystem();
    let c = await own.client();
    const vmid = await c.vmsCreate(V_CLIENT, 4 * PAGE, { device: await c.vmMounte(fs.strategy) });
    await c.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(pattern(vmid, 0)));
    await c.vmWritep(vmid, 0, 1);
    await c.vmsIowait(vmid);
    await c.close();
    expect(await own.stop()).toBe(0);
    const again = await startDaemon({ memory: '1MiB', stateDir: own.stateDir });
    c = await again.client();
    expect(await c.segments()).toEqual([expect.objectContaining({ vmid, type: V_CLIENT, extent: 4 * PAGE })]);
    await expect(c.vmMove(vmid, 0, PAGE, UIO_READ, uio(new Uint8Array(PAGE)))).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' });
    await c.vmSetdevid(vmid, await c.vmMounte(fs.strategy));
    const back = new Uint8Array(PAGE);
    await c.vmMove(vmid, 0, PAGE, UIO_READ, uio(back));
    expect(Buffer.from(back).equals(pattern(vmid, 0))).toBe(true);
    await c.close();
    expect(await again.stop()).toBe(0);
  });

  it('only a device of the segment owner\'s uid may page it; vm_ioaccessp on a working segment stays EINVAL; vmSetdevid rebinds and vmsDelete deletes (with \`from\`, only while bound to that device)', async () => {
    const c = await daemon.client();
    const fsA = memoryFileSystem();
    const fsB = memoryFileSystem();
    const a = await c.vmMounte(fsA.strategy);
    const b = await c.vmMounte(fsB.strategy);
    const vmid = await c.vmsCreate(V_CLIENT, 4 * PAGE, { device: a });
    await c.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(pattern(vmid, 0)));
    await c.vmWritep(vmid, 0, 1);
    await c.vmsIowait(vmid);
    expect(fsA.pages.size).toBe(1);
    await c.vmSetdevid(vmid, b);
    await c.vmMove(vmid, PAGE, PAGE, UIO_WRITE, uio(pattern(vmid, 1)));
    await c.vmWritep(vmid, 1, 1);
    await c.vmsIowait(vmid);
    expect([...fsB.pages.keys()]).toEqual([`${vmid}:1`]);
    // Rebinding from a named device: only while the segment is bound to it.
    await expect(c.vmSetdevid(vmid, a, { from: a })).rejects.toMatchObject({ code: 'EBUSY', reason: 'segment-rebound' });
    expect(((await c.segments()).find((s) => s.vmid === vmid))?.device).toBe(b);
    await c.vmSetdevid(vmid, a, { from: b });
    expect(((await c.segments()).find((s) => s.vmid === vmid))?.device).toBe(a);
    // Likewise deleting it: a segment another program took over is not deleted.
    await expect(c.vmsDelete(vmid, { from: b })).rejects.toMatchObject({ code: 'EBUSY', reason: 'segment-rebound' });
    expect((await c.segments()).some((s) => s.vmid === vmid)).toBe(true);
    const other = await c.vmsCreate(V_CLIENT, 4 * PAGE, { device: b });
    await c.vmsDelete(other, { from: b });
    expect((await c.segments()).some((s) => s.vmid === other)).toBe(false);
    await expect(c.vmsCreate(V_CLIENT, PAGE, { device: 9999 })).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-such-device' });
    await expect(c.vmsCreate(V_WORKING, PAGE, { device: a })).rejects.toMatchObject({ code: 'EINVAL', reason: 'not-client-segment' });
    const working = await c.vmsCreate(V_WORKING, PAGE);
    await expect(c.vmSetdevid(working, a)).rejects.toMatchObject({ code: 'EINVAL', reason: 'not-client-segment' });
    await expect(c.vmIoaccessp(working, 0, PAGE, VM_IOACCESSP_MAKE)).rejects.toMatchObject({ code: 'EINVAL' });
    // Another uid's connection cannot bind its segments to this uid's device, nor unmount it.
    await c.close();
  });

  it("a page-out's pages go to the strategy as they were when it started, though they sit in the socket's queue while a client writes them again", async () => {
    const PAGES = 512; // 2 MiB of page-outs: more than the socket's buffers hold, so most wait in the daemon's queue
    const { raw, vmid } = await rawFileSystem(daemon.socket, PAGES);
    const writer = await daemon.client();
    const version = (v: number): Uint8Array => new Uint8Array(PAGES * PAGE).fill(v);
    await writer.vmMove(vmid, 0, PAGES * PAGE, UIO_WRITE, uio(version(1)));

    raw.socket.pause(); // the file system stops reading its connection
    const writesOf = (): StrategyIo[] => raw.strategyRequests.filter((io) => io.op === 'write');
    await writer.vmWritep(vmid, 0, PAGES);
    const rewrite = writer.vmMove(vmid, 0, PAGES * PAGE, UIO_WRITE, uio(version(2)));
    await new Promise((r) => setTimeout(r, 300)); // time for a write that did not wait for the queued pages to land in them
    raw.socket.resume();
    await raw.until(() => writesOf().reduce((n, io) => n + io.npages, 0) === PAGES, 5000);
    for (const io of writesOf()) expect(io.data.every((b) => b === 1), `page-out of pages ${io.page}..${io.page + io.npages - 1}`).toBe(true);
    for (const io of writesOf()) raw.send(encodeStrategyDoneFrame({ id: io.id, errno: 0, data: new Uint8Array(0) }));
    expect(await rewrite).toBe(PAGES * PAGE);

    const before = writesOf().length;
    await writer.vmWritep(vmid, 0, PAGES);
    await raw.until(() => writesOf().slice(before).reduce((n, io) => n + io.npages, 0) === PAGES, 5000);
    for (const io of writesOf().slice(before)) {
      expect(io.data.every((b) => b === 2)).toBe(true);
      raw.send(encodeStrategyDoneFrame({ id: io.id, errno: 0, data: new Uint8Array(0) }));
    }
    await writer.vmsIowait(vmid);
    await writer.close();
    raw.close();
  });

  it('a strategy that writes pages of its own page-outs still queued behind the in-flight limit is not held up by them', async () => {
    const PAGES = 64;
    const fsClient = await daemon.client();
    const writer = await daemon.client();
    const fs = memoryFileSystem();
    let vmid = 0;
    let rewrites = 0;
    const device = await fsClient.vmMounte(async (io) => {
      // While it serves a page-out, the file system writes the last page of the segment (a header,
      // say): that page waits in the device's queue, behind this very request.
      if (io.op === 'write') {
        rewrites++;
        await fsClient.vmMove(vmid, (PAGES - 2) * PAGE, PAGE, UIO_WRITE, uio(pattern(vmid, 1000 + rewrites)));
      }
      await fs.strategy(io);
    });
    vmid = await writer.vmsCreate(V_CLIENT, PAGES * PAGE, { device, mode: 0o666 });
    // Every other page modified: 32 page-outs of one page each, 16 sent at once, 16 queued.
    for (let p = 0; p < PAGES; p += 2) await writer.vmMove(vmid, p * PAGE, PAGE, UIO_WRITE, uio(pattern(vmid, p)));
    await writer.vmWritep(vmid, 0, PAGES);
    await writer.vmsIowait(vmid); // EIO device-gone if the strategies had waited out the timeout
    expect(rewrites).toBeGreaterThanOrEqual(32);
    expect((await fsClient.devices()).find((d) => d.id === device)?.alive).toBe(true);
    await writer.vmsDelete(vmid);
    await fsClient.vmUmount(device);
    await Promise.all([writer.close(), fsClient.close()]);
  });

  it('a device that times out with page-outs still in its socket\'s queue has its connection dropped: their pages are writable again', async () => {
    const big = await startDaemon({ memory: '64MiB', env: { PAGERD_STRATEGY_TIMEOUT_MS: '1500', PAGERD_STRATEGY_MAX_REQUEST_PAGES: '2048', PAGERD_SERVER_STALLED_DROP_MS: '60000', ...WHOLE_POOL_MODIFIABLE } });
    try {
      const PAGES = 8192; // 32 MiB of page-outs in requests of 8 MiB: more than the socket's buffers take
      const { raw, vmid } = await rawFileSystem(big.socket, PAGES);
      const writer = await big.client();
      await writer.vmMove(vmid, 0, PAGES * PAGE, UIO_WRITE, uio(new Uint8Array(PAGES * PAGE).fill(1)));
      raw.socket.pause(); // the file system stops reading: its page-outs stay in the daemon's queue, their frames pinned
      await writer.vmWritep(vmid, 0, PAGES);
      const started = Date.now();
      // The last page's frame waits in the queue; a write of it waits for the socket to let it go.
      expect(await writer.vmMove(vmid, (PAGES - 1) * PAGE, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(2)))).toBe(PAGE);
      const waited = Date.now() - started;
      expect(waited).toBeGreaterThanOrEqual(1400); // held until the 1.5 s timeout dropped the connection,
      expect(waited).toBeLessThan(10_000); // not until the 60 s stall drop
      raw.socket.resume();
      await raw.until(() => raw.closed, 5000);
      expect(raw.closed).toBe(true);
      await expect(writer.vmsIowait(vmid)).rejects.toMatchObject({ code: 'EIO' }); // the page-outs failed with the device
      await writer.close();
    } finally {
      await big.stop();
    }
  });

  it('a strategy that answers a page-out after reading only its head, then stops reading, has its connection dropped: the pages are writable again', async () => {
    const big = await startDaemon({ memory: '64MiB', env: { PAGERD_STRATEGY_TIMEOUT_MS: '1500', PAGERD_STRATEGY_MAX_REQUEST_PAGES: '8192', PAGERD_SERVER_STALLED_DROP_MS: '60000', ...WHOLE_POOL_MODIFIABLE } });
    try {
      const PAGES = 8192; // one page-out request of 32 MiB: far more than the socket's buffers take
      const { raw, vmid } = await rawFileSystem(big.socket, PAGES);
      const writer = await big.client();
      await writer.vmMove(vmid, 0, PAGES * PAGE, UIO_WRITE, uio(new Uint8Array(PAGES * PAGE).fill(1)));
      // The page-out's first bytes arrive: its head names the request. The peer answers it and
      // reads no more. (Every frame before it was read whole: the stream is at a frame boundary.)
      const requestId = new Promise<number>((resolve) => {
        let seen = Buffer.alloc(0);
        const look = (chunk: Buffer): void => {
          seen = Buffer.concat([seen, chunk]);
          for (let at = 0; at + 9 <= seen.length; at += 4 + seen.readUInt32BE(at)) {
            if (seen[at + 4] !== Kind.STRATEGY_IO) continue; // the vmWritep's reply
            raw.socket.pause();
            raw.socket.off('data', look);
            return resolve(seen.readUInt32LE(at + 5)); // length prefix, kind, then the request id
          }
        };
        raw.socket.on('data', look);
      });
      await writer.vmWritep(vmid, 0, PAGES);
      raw.send(encodeStrategyDoneFrame({ id: await requestId, errno: 0, data: new Uint8Array(0) }));
      const started = Date.now();
      expect(await writer.vmMove(vmid, (PAGES - 1) * PAGE, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(2)))).toBe(PAGE);
      const waited = Date.now() - started;
      expect(waited).toBeGreaterThanOrEqual(1000); // held until the connection was dropped,
      expect(waited).toBeLessThan(10_000); // not until the 60 s stall drop
      raw.socket.resume();
      await raw.until(() => raw.closed, 5000);
      expect(raw.closed).toBe(true);
      await writer.close();
    } finally {
      await big.stop();
    }
  });

  it('garbage strategy answers (unknown ids, wrong sizes, bytes with a write, after the unmount) never crash the daemon', async () => {
    const raw = await RawConnection.open(daemon.socket);
    const call = rawCaller(raw);
    const device = (await call('vmMounte', []))!;
    const vmid = (await call('vmsCreateOn', [V_CLIENT, 8 * PAGE, 0, 0o666, device]))!;
    const reader = await daemon.client();
    const read = (pno: number): Promise<number> => reader.vmMove(vmid, pno * PAGE, PAGE, UIO_READ, uio(new Uint8Array(PAGE)));

    const first = read(0);
    first.catch(() => undefined);
    await raw.until(() => raw.strategyRequests.length === 1, 5000);
    const asked = raw.strategyRequests[0];
    expect(asked).toMatchObject({ op: 'read', device, vmid, page: 0, npages: 1 });
    raw.send(encodeStrategyDoneFrame({ id: asked.id + 1000, errno: 0, data: new Uint8Array(PAGE) })); // no such request: dropped
    raw.send(encodeStrategyDoneFrame({ id: asked.id, errno: 0, data: new Uint8Array(PAGE - 1) })); // the wrong size
    await expect(first).rejects.toMatchObject({ code: 'EIO', reason: 'file-system-error' });

    const second = read(1);
    await raw.until(() => raw.strategyRequests.length === 2, 5000);
    raw.send(encodeStrategyDoneFrame({ id: raw.strategyRequests[1].id, errno: 0, data: new Uint8Array(PAGE).fill(3) }));
    expect(await second).toBe(PAGE);
    raw.send(encodeStrategyDoneFrame({ id: raw.strategyRequests[1].id, errno: 0, data: new Uint8Array(PAGE) })); // answered twice

    // A write answered with bytes (a write's answer carries none): the page-out fails, its page stays modified.
    await reader.vmMove(vmid, 2 * PAGE, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(4)));
    await reader.vmWritep(vmid, 2, 1);
    await raw.until(() => raw.strategyRequests.some((io) => io.op === 'write'), 5000);
    const write = raw.strategyRequests.find((io) => io.op === 'write')!;
    raw.send(encodeStrategyDoneFrame({ id: write.id, errno: 0, data: new Uint8Array(PAGE) }));
    await expect(reader.vmsIowait(vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'file-system-error' });
    expect(await reader.vmQmodify(vmid)).toBe(true);

    await call('vmsDelete', [vmid]);
    await call('vmUmount', [device]);
    raw.send(encodeStrategyDoneFrame({ id: raw.strategyRequests[1].id, errno: 5, data: new Uint8Array(0) })); // after the unmount
    raw.send(Buffer.from([0, 0, 0, 3, 6, 1, 2])); // a strategy answer that cannot be decoded: the connection closes
    await raw.until(() => raw.closed, 5000);
    expect(raw.closed).toBe(true);
    expect(daemon.proc.exitCode).toBeNull();
    expect(await reader.vmsCreate(V_WORKING, PAGE)).toBeGreaterThan(0);
    await reader.close();
  });
});

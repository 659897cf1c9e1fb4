import { afterEach, describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING, connect, type PagerClient } from '../../src/client/index.js';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';
import { mulberry32 } from '../support/random.js';

const PAGE = 4096;
const uio = (buf: Uint8Array, resid = buf.length) => ({ iov: [buf], offset: 0, resid, segflg: 0 });

/** Page bytes saying whose version they are: every 16-byte word is (vmid, pno, version, ~version). */
function pageOf(vmid: number, pno: number, version: number): Uint8Array {
  const bytes = new Uint8Array(PAGE);
  const view = new DataView(bytes.buffer);
  for (let at = 0; at < PAGE; at += 16) {
    view.setUint32(at, vmid, true);
    view.setUint32(at + 4, pno, true);
    view.setUint32(at + 8, version, true);
    view.setUint32(at + 12, ~version >>> 0, true);
  }
  return bytes;
}

/** What a page read shows: zeros, one version of one page, or torn (words that disagree). */
function readBack(bytes: Uint8Array): { kind: 'zeros' } | { kind: 'page'; vmid: number; pno: number; version: number } | { kind: 'torn' } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const first = [0, 4, 8, 12].map((o) => view.getUint32(o, true));
  for (let at = 16; at < PAGE; at += 16) {
    for (let k = 0; k < 4; k++) if (view.getUint32(at + 4 * k, true) !== first[k]) return { kind: 'torn' };
  }
  if (first.every((w) => w === 0)) return { kind: 'zeros' };
  if (first[3] !== ~first[2] >>> 0) return { kind: 'torn' };
  return { kind: 'page', vmid: first[0], pno: first[1], version: first[2] };
}

let daemon: RunningDaemon | undefined;
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
});

describe('shared frames', () => {
  it('a trusted client reads resident pages from the mapping, exactly as through the daemon, once it has read the segment through the daemon', async () => {
    daemon = await startDaemon({ memory: '4MiB' });
    const c = await connect({ socket: daemon.socket });
    expect(await c.sharedFramesReady()).toBe(true);
    const vmid = await c.vmsCreate(V_WORKING, 16 * PAGE);
    const written = new Uint8Array(3 * PAGE).map((_, i) => (i * 7) & 0xff);
    await c.vmMove(vmid, 0, written.length, UIO_WRITE, uio(written));
    const into = new Uint8Array(2 * PAGE);
    expect(c.tryReadResident(vmid, 100, into)).toBe(0); // not read through the daemon yet: its access is unchecked
    await c.vmMove(vmid, 0, PAGE, UIO_READ, uio(new Uint8Array(PAGE)));
    expect(c.tryReadResident(vmid, 100, into)).toBe(2 * PAGE);
    expect(into).toEqual(written.subarray(100, 100 + 2 * PAGE));
    expect(c.tryReadResident(vmid, 5 * PAGE, into)).toBe(0); // never written: not resident
    // A move of resident pages is served from the mapping and advances the uio as the daemon would.
    const buf = new Uint8Array(PAGE + 10);
    const u = { iov: [buf], offset: 10, resid: PAGE, segflg: 0 };
    expect(await c.vmMove(vmid, 2 * PAGE - 5, PAGE, UIO_READ, u)).toBe(PAGE);
    expect(u).toMatchObject({ offset: 10 + PAGE, resid: 0 });
    expect(buf.subarray(10)).toEqual(written.subarray(2 * PAGE - 5, 3 * PAGE - 5));
    // A read issued after a write still in flight on the same connection sees the write.
    const pipelined = new Uint8Array(PAGE);
    const wrote = c.vmMove(vmid, 0, 4, UIO_WRITE, uio(Uint8Array.from([9, 9, 9, 9])));
    await Promise.all([wrote, c.vmMove(vmid, 0, PAGE, UIO_READ, uio(pipelined))]);
    expect(pipelined.subarray(0, 5)).toEqual(Uint8Array.from([9, 9, 9, 9, written[4]]));
    // What the daemon would refuse goes to it, and gets its answer.
    await expect(c.vmMove(vmid, 0, 10, UIO_READ, { iov: [new Uint8Array(10)], offset: -1, resid: 10, segflg: 0 })).rejects.toMatchObject({ code: 'EFAULT', reason: 'malformed-uio' });
    // Past what is resident, the same call goes to the daemon and gets its answer.
    await expect(c.vmMove(vmid, 15 * PAGE, 2 * PAGE, UIO_READ, uio(new Uint8Array(2 * PAGE)))).rejects.toMatchObject({ code: 'EFAULT' });
    const off = await connect({ socket: daemon.socket, sharedFrames: false });
    expect(await off.sharedFramesReady()).toBe(false);
    await off.vmMove(vmid, 0, PAGE, UIO_READ, uio(new Uint8Array(PAGE)));
    expect(off.tryReadResident(vmid, 0, into)).toBe(0);
    await off.close();
    await c.close();
    expect(c.tryReadResident(vmid, 100, into)).toBe(0); // closed: the daemon may be gone, its old frames say nothing
  });

  it('reads from the mapping while the daemon evicts, pages in, writes, releases and deletes underneath: never torn, never another page, never older than the last write completed before the read', async () => {
    daemon = await startDaemon({ memory: '1MiB' }); // 256 frames for 3 × 128 pages: constant eviction
    const writer = await connect({ socket: daemon.socket });
    const reader = await connect({ socket: daemon.socket });
    expect(await reader.sharedFramesReady()).toBe(true);
    const PAGES = 128;
    type Value = { kind: 'zeros' } | { kind: 'page'; version: number } | { kind: 'gone' };
    interface Seg {
      vmid: number;
      /** Per page: what the last completed operation left, and what the one in flight may leave. */
      done: Value[];
      inFlight: (Value | undefined)[];
    }
    const newSegment = async (): Promise<Seg> => {
      const vmid = await writer.vmsCreate(V_WORKING, PAGES * PAGE);
      await reader.vmMove(vmid, 0, PAGE, UIO_READ, uio(new Uint8Array(PAGE))); // access checked once
      return { vmid, done: Array.from({ length: PAGES }, () => ({ kind: 'zeros' }) as Value), inFlight: new Array(PAGES).fill(undefined) };
    };
    const segs = [await newSegment(), await newSegment(), await newSegment()];
    let version = 1;
    let stop = false;
    const failures: string[] = [];
    let reads = 0;
    let copied = 0;

    const matches = (got: ReturnType<typeof readBack>, want: Value | undefined, vmid: number, pno: number): boolean => {
      if (want === undefined) return false;
      if (want.kind === 'gone') return true;
      if (want.kind === 'zeros') return got.kind === 'zeros';
      return got.kind === 'page' && got.vmid === vmid && got.pno === pno && got.version === want.version;
    };
    const check = (seg: Seg, pno: number, bytes: Uint8Array): void => {
      const got = readBack(bytes);
      if (matches(got, seg.done[pno], seg.vmid, pno) || matches(got, seg.inFlight[pno], seg.vmid, pno)) return;
      failures.push(`segment ${seg.vmid} page ${pno}: read ${JSON.stringify(got)}, expected ${JSON.stringify(seg.done[pno])} or ${JSON.stringify(seg.inFlight[pno])}`);
    };

    // Writers: each owns pages p ≡ k (mod 8) of every segment, so a page has one operation at a time.
    const writerLoop = async (k: number): Promise<void> => {
      const random = mulberry32(k + 1);
      while (!stop) {
        const seg = segs[Math.floor(random() * segs.length)];
        const pno = k + 8 * Math.floor(random() * (PAGES / 8));
        const roll = random();
        const v = version++;
        const next: Value = roll < 0.15 ? { kind: 'zeros' } : { kind: 'page', version: v };
        seg.inFlight[pno] = next;
        try {
          if (next.kind === 'zeros') await writer.vmReleasep(seg.vmid, pno, 1);
          else await writer.vmMove(seg.vmid, pno * PAGE, PAGE, UIO_WRITE, uio(pageOf(seg.vmid, pno, v)));
          if (roll > 0.9) {
            await writer.vmWritep(seg.vmid, pno, 1);
            await writer.vmsIowait(seg.vmid);
          }
        } catch (err) {
          if (seg.done[pno].kind !== 'gone') failures.push(`writer: ${String(err)}`);
        }
        if (seg.done[pno].kind !== 'gone') seg.done[pno] = next;
        seg.inFlight[pno] = undefined;
      }
    };
    // Now and then a segment is deleted (its pages may read as anything until the delete is done,
    // then not at all) and a new one takes its place.
    const deleterLoop = async (): Promise<void> => {
      while (!stop) {
        await new Promise((r) => setTimeout(r, 400));
        const i = Math.floor(Math.random() * segs.length);
        const old = segs[i];
        old.done.fill({ kind: 'gone' });
        await writer.vmsDelete(old.vmid);
        segs[i] = await newSegment();
        const after = new Uint8Array(PAGE);
        for (let pno = 0; pno < PAGES; pno++) if (reader.tryReadResident(old.vmid, pno * PAGE, after) !== 0) failures.push(`deleted segment ${old.vmid} page ${pno} still read`);
      }
    };
    // The reader: synchronous copies between the writers' turns (the daemon runs meanwhile).
    const readerLoop = async (): Promise<void> => {
      const random = mulberry32(99);
      const into = new Uint8Array(PAGE);
      while (!stop) {
        for (let i = 0; i < 200; i++) {
          const seg = segs[Math.floor(random() * segs.length)];
          const pno = Math.floor(random() * PAGES);
          reads++;
          if (reader.tryReadResident(seg.vmid, pno * PAGE, into) === PAGE) {
            copied++;
            check(seg, pno, into);
          }
        }
        await new Promise((r) => setImmediate(r));
      }
    };
    // A second reader copies through vmMove into 256 iovecs of 16 bytes: a copy twenty times as
    // slow, which the daemon's changes have that much more time to race. A read served from the
    // mapping is done when vmMove returns its promise (the uio has advanced); one that was not goes
    // to the daemon and is not checked here.
    let slowCopied = 0;
    const slowReaderLoop = async (): Promise<void> => {
      const random = mulberry32(7);
      const pieces = Array.from({ length: PAGE / 16 }, () => new Uint8Array(16));
      while (!stop) {
        for (let i = 0; i < 50; i++) {
          const seg = segs[Math.floor(random() * segs.length)];
          const pno = Math.floor(random() * PAGES);
          const u = { iov: pieces, offset: 0, resid: PAGE, segflg: 0 };
          const moved = reader.vmMove(seg.vmid, pno * PAGE, PAGE, UIO_READ, u);
          if (u.resid === 0) {
            slowCopied++;
            check(seg, pno, Buffer.concat(pieces));
          }
          await moved.catch(() => undefined);
        }
        await new Promise((r) => setImmediate(r));
      }
    };
    const loops = [readerLoop(), slowReaderLoop(), deleterLoop(), ...Array.from({ length: 8 }, (_, k) => writerLoop(k))];
    await new Promise((r) => setTimeout(r, Number(process.env.PAGERD_SHARED_STRESS_MS ?? 6000)));
    stop = true;
    await Promise.all(loops);
    console.log(`shared-frame stress: ${reads} reads, ${copied} from the mapping, ${slowCopied} slow copies from it, ${version - 1} writes and releases`);
    expect(failures.slice(0, 5)).toEqual([]);
    expect(copied).toBeGreaterThan(1000);
    await writer.close();
    await reader.close();
  }, 60_000);
});

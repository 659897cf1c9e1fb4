import { UIO_READ, UIO_WRITE, V_WORKING, type PagerClient } from '../src/client/index.js';
import { fioNbd, haveFioAndNbdkit, withNbdkit } from './nbd.js';
import { percentile } from './stats.js';
import { pipelined } from './throughput.js';
import { copyBytes } from '../src/copy-bytes.js';

const PAGE = 4096;
const PAGES = 1024;

/** A segment of PAGES resident pages that `c` has read through the daemon once (so it may read them from the mapping). */
export async function residentSegment(c: PagerClient): Promise<number> {
  const vmid = await c.vmsCreate(V_WORKING, PAGES * PAGE);
  const fill = new Uint8Array(PAGES * PAGE).fill(3);
  await c.vmMove(vmid, 0, fill.length, UIO_WRITE, { iov: [fill], offset: 0, resid: fill.length, segflg: 0 });
  await c.vmMove(vmid, 0, PAGE, UIO_READ, { iov: [new Uint8Array(PAGE)], offset: 0, resid: PAGE, segflg: 0 });
  if (!(await c.sharedFramesReady())) throw new Error(`shared frames are not offered to the benchmark: ${c.sharedFramesError?.message ?? 'turned off'}`);
  return vmid;
}

/** tryReadResident of 4 KiB pages in turn: copies per second, and the p50 of one copy (µs, timed in batches of 64). */
export function tryReadRate(c: PagerClient, vmid: number, ops: number): { rate: number; p50: number } {
  const into = new Uint8Array(PAGE);
  const batches: number[] = [];
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i += 64) {
    const t = process.hrtime.bigint();
    for (let k = 0; k < 64; k++) if (c.tryReadResident(vmid, ((i + k) % PAGES) * PAGE, into) !== PAGE) throw new Error('a resident page was not read from the mapping');
    batches.push(Number(process.hrtime.bigint() - t) / 1e3 / 64);
  }
  return { rate: ops / (Number(process.hrtime.bigint() - start) / 1e9), p50: percentile(batches, 50) };
}

/** The baseline: copying 4 KiB out of a SharedArrayBuffer (copyBytes, the fastest copy there), per second and p50 (µs). */
export function sharedCopyRate(ops: number): { rate: number; p50: number } {
  const memory = new Uint8Array(new SharedArrayBuffer(PAGES * PAGE)).fill(3);
  const into = new Uint8Array(PAGE);
  const batches: number[] = [];
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i += 64) {
    const t = process.hrtime.bigint();
    for (let k = 0; k < 64; k++) {
      const at = ((i + k) % PAGES) * PAGE;
      copyBytes(into, 0, memory, at, at + PAGE);
    }
    batches.push(Number(process.hrtime.bigint() - t) / 1e3 / 64);
  }
  return { rate: ops / (Number(process.hrtime.bigint() - start) / 1e9), p50: percentile(batches, 50) };
}

/** vmMove reads of 4 KiB resident pages with `window` in flight, served from the mapping: ops/s. */
export function sharedMoveRate(c: PagerClient, vmid: number, window: number, ops: number): Promise<number> {
  const buffers = Array.from({ length: window }, () => new Uint8Array(PAGE));
  return pipelined(ops, window, (i) => c.vmMove(vmid, (i % PAGES) * PAGE, PAGE, UIO_READ, { iov: [buffers[i % window]], offset: 0, resid: PAGE, segflg: 0 }));
}

/** nbdkit's file plugin read by fio's nbd engine: 4 KiB randread IOPS at `iodepth`; undefined without fio or nbdkit. */
export async function nbdkitRandread(dir: string, iodepth: number, seconds: number): Promise<number | undefined> {
  if (!haveFioAndNbdkit()) return undefined;
  return withNbdkit(dir, (uri) => fioNbd(uri, 'randread', iodepth, seconds).iops);
}

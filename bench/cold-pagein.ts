import { open } from 'node:fs/promises';
import { UIO_READ, UIO_WRITE, V_WORKING, type PagerClient } from '../src/client/index.js';
import { shuffle } from './durable-pageout.js';
import { pipelined } from './throughput.js';

const PAGE = 4096;

/** Writes and flushes `n` pages, so none is resident; answers the segment. */
export async function preparedColdSegment(c: PagerClient, n: number): Promise<number> {
  const vmid = await c.vmsCreate(V_WORKING, n * PAGE);
  const chunk = new Uint8Array(256 * PAGE).fill(5);
  for (let p = 0; p < n; p += 256) {
    const bytes = Math.min(256, n - p) * PAGE;
    await c.vmMove(vmid, p * PAGE, bytes, UIO_WRITE, { iov: [chunk.subarray(0, bytes)], offset: 0, resid: bytes, segflg: 0 });
  }
  await c.vmFlushp(vmid, 0, n);
  await c.vmsIowait(vmid);
  return vmid;
}

/** Random 4 KiB vmMove reads of non-resident pages, `window` in flight: ops/s. Evicts them again after. */
export async function pagerdColdReads(c: PagerClient, vmid: number, n: number, window: number, seed: number): Promise<number> {
  const rate = await pagerdRandomReads(c, vmid, n, window, seed);
  await c.vmFlushp(vmid, 0, n);
  return rate;
}

/** Random 4 KiB vmMove reads of the segment's `n` pages, `window` in flight: ops/s (the reads alone). */
export async function pagerdRandomReads(c: PagerClient, vmid: number, n: number, window: number, seed: number): Promise<number> {
  const order = shuffle(n, seed);
  const buffers = Array.from({ length: window }, () => new Uint8Array(PAGE));
  return pipelined(n, window, (i) => c.vmMove(vmid, order[i] * PAGE, PAGE, UIO_READ, { iov: [buffers[i % window]], offset: 0, resid: PAGE, segflg: 0 }));
}

/** Raw random positional 4 KiB reads of the same device, same concurrency: ops/s. */
export async function rawRandomReads(devicePath: string, slots: number, n: number, window: number, seed: number): Promise<number> {
  const fh = await open(devicePath, 'r');
  const order = shuffle(slots, seed).slice(0, n);
  const buffers = Array.from({ length: window }, () => Buffer.alloc(PAGE));
  const rate = await pipelined(n, window, (i) => fh.read(buffers[i % window], 0, PAGE, (order[i] + 1) * PAGE));
  await fh.close();
  return rate;
}

import { closeSync, openSync, unlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { UIO_WRITE, V_LARGE, V_WORKING, type PagerClient } from '../src/client/index.js';
import { pipelined } from './throughput.js';

const PAGE = 4096;

function shuffle(n: number, seed: number): number[] {
  const xs = Array.from({ length: n }, (_, i) => i);
  let s = seed;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) >>> 0;
    const j = s % (i + 1);
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

/**
 * Modifies N random pages of a segment, then vm_write(force) + vms_iowait: answers pages/s of the
 * durable page-out alone (the modification is not timed).
 */
export async function pagerdDurablePageout(c: PagerClient, n: number): Promise<number> {
  const vmid = await c.vmsCreate(V_WORKING, 2 * n * PAGE, V_LARGE);
  const vaddr = await c.vmAtt(vmid, 0);
  const pages = shuffle(2 * n, n).slice(0, n);
  const buf = new Uint8Array(PAGE).fill(9);
  await pipelined(n, 64, (i) => c.vmMove(vmid, pages[i] * PAGE, PAGE, UIO_WRITE, { iov: [buf], offset: 0, resid: PAGE, segflg: 0 }));
  const start = process.hrtime.bigint();
  // vm_write maps one 256 MiB window at a time; a larger segment takes one call per window.
  for (let base = 0; base < 2 * n * PAGE; base += 0x10000000) {
    const at = base === 0 ? vaddr : await c.vmAtt(vmid, base);
    await c.vmWrite(at, Math.min(0x10000000, 2 * n * PAGE - base), 1);
  }
  await c.vmsIowait(vmid);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await c.vmsDelete(vmid);
  return n / seconds;
}

/** Baseline (a): the same bytes written sequentially with positional writes, then one fdatasync. */
export async function sequentialWrites(dir: string, n: number): Promise<number> {
  const path = join(dir, 'baseline-seq');
  closeSync(openSync(path, 'w'));
  const fh = await open(path, 'r+');
  const chunk = Buffer.alloc(256 * PAGE, 9);
  const start = process.hrtime.bigint();
  const writes: Promise<unknown>[] = [];
  for (let p = 0; p < n; p += 256) {
    const count = Math.min(256, n - p);
    writes.push(fh.write(chunk, 0, count * PAGE, p * PAGE));
    if (writes.length >= 16) await writes.shift();
  }
  await Promise.all(writes);
  await fh.datasync();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await fh.close();
  unlinkSync(path);
  return n / seconds;
}

/** Baseline (b): the naive way, one positional write and one fdatasync per page. */
export async function naiveWrites(dir: string, n: number): Promise<number> {
  const path = join(dir, 'baseline-naive');
  closeSync(openSync(path, 'w'));
  const fh = await open(path, 'r+');
  const page = Buffer.alloc(PAGE, 9);
  const order = shuffle(2 * n, n + 1).slice(0, n);
  const start = process.hrtime.bigint();
  for (const p of order) {
    await fh.write(page, 0, PAGE, p * PAGE);
    await fh.datasync();
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await fh.close();
  unlinkSync(path);
  return n / seconds;
}

export { shuffle };

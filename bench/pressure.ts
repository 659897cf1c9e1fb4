import { UIO_READ, UIO_WRITE, V_WORKING, type PagerClient } from '../src/client/index.js';
import { pipelined } from './throughput.js';

const PAGE = 4096;

/** A zipfian sampler over [0, n) with exponent s (rank 0 the most popular), seeded. */
export function zipf(n: number, s: number, seed: number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) cdf[k] = sum += 1 / (k + 1) ** s;
  for (let k = 0; k < n; k++) cdf[k] /= sum;
  // Scatter ranks over the pages, so popular pages are not neighbours.
  const pageOf = new Uint32Array(n).map((_, i) => i);
  let x = seed >>> 0;
  const rnd = (): number => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 4294967296);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [pageOf[i], pageOf[j]] = [pageOf[j], pageOf[i]];
  }
  return () => {
    const u = rnd();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return pageOf[lo];
  };
}

export interface PressureResult {
  opsPerSecond: number;
  hitRatio: number;
  pageInsPerOp: number;
  pageOutsPerOp: number;
}

/** A segment for zipfianLoad, created once per daemon so that runs after the first find it warm. */
export function pressureSegment(c: PagerClient, pages: number): Promise<number> {
  return c.vmsCreate(V_WORKING, pages * PAGE);
}

/** Zipfian 4 KiB moves (70% reads, 30% writes) over the segment's `pages` pages, 16 in flight. */
export async function zipfianLoad(c: PagerClient, vmid: number, pages: number, ops: number, seed: number): Promise<PressureResult> {
  const next = zipf(pages, 0.99, seed);
  const buffers = Array.from({ length: 16 }, () => new Uint8Array(PAGE).fill(seed & 0xff));
  const before = (await c.stats()).counters as Record<string, number>;
  const rate = await pipelined(ops, 16, (i) => {
    const write = i % 10 < 3;
    return c.vmMove(vmid, next() * PAGE, PAGE, write ? UIO_WRITE : UIO_READ, { iov: [buffers[i % 16]], offset: 0, resid: PAGE, segflg: 0 });
  });
  const after = (await c.stats()).counters as Record<string, number>;
  const d = (k: string): number => after[k] - before[k];
  return { opsPerSecond: rate, hitRatio: d('hits') / Math.max(1, d('hits') + d('misses')), pageInsPerOp: d('pageIns') / ops, pageOutsPerOp: d('pageOuts') / ops };
}

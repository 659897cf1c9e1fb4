import { UIO_READ, UIO_WRITE, V_WORKING, type PagerClient } from '../src/client/index.js';
import type { RawClient } from './raw-client.js';

const PAGE = 4096;
const PAGES = 256;

/** Runs `ops` operations keeping `window` in flight; answers operations per second. */
export async function pipelined(ops: number, window: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = process.hrtime.bigint();
  const lane = async (): Promise<void> => {
    while (next < ops) await op(next++);
  };
  await Promise.all(Array.from({ length: window }, lane));
  return ops / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** vmMove of 4 KiB to or from resident pages with `window` requests in flight: ops/s. */
export async function pagerdThroughput(c: PagerClient, rw: 'read' | 'write', window: number, ops: number): Promise<number> {
  const vmid = await c.vmsCreate(V_WORKING, PAGES * PAGE);
  const fill = new Uint8Array(PAGES * PAGE).fill(1);
  await c.vmMove(vmid, 0, fill.length, UIO_WRITE, { iov: [fill], offset: 0, resid: fill.length, segflg: 0 });
  const buffers = Array.from({ length: window }, () => new Uint8Array(PAGE).fill(2));
  const rate = await pipelined(ops, window, (i) => {
    const buf = buffers[i % window];
    return c.vmMove(vmid, (i % PAGES) * PAGE, PAGE, rw === 'read' ? UIO_READ : UIO_WRITE, { iov: [buf], offset: 0, resid: PAGE, segflg: 0 });
  });
  await c.vmsDelete(vmid);
  return rate;
}

/** The raw pipelined echo of the same sizes: ops/s. */
export function rawThroughput(raw: RawClient, rw: 'read' | 'write', window: number, ops: number): Promise<number> {
  return pipelined(ops, window, () => (rw === 'read' ? raw.request(64, PAGE) : raw.request(PAGE + 64, 16)));
}

/** `processes` client processes at once, each with `window` in flight: total ops/s. */
export async function multiProcessThroughput(mode: 'pagerd' | 'raw', socket: string, rw: 'read' | 'write', processes: number, window: number, ops: number): Promise<number> {
  const { fork } = await import('node:child_process');
  const { join } = await import('node:path');
  const workers = Array.from({ length: processes }, () =>
    fork(join(import.meta.dirname, 'throughput-worker.js'), [mode, socket, rw, String(window), String(ops)], { stdio: 'ignore' }),
  );
  await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
  const rates = workers.map((w) => new Promise<number>((resolve) => w.once('message', (m: { rate: number }) => resolve(m.rate))));
  for (const w of workers) w.send('go');
  return (await Promise.all(rates)).reduce((a, b) => a + b, 0);
}

/**
 * The daemon's memory around stalled readers: 200 connections each ask for 300 reads of 1 MiB and
 * never read a reply. Prints the daemon's RSS before, at its peak, and after they are gone.
 *
 *   npm run build && node dist/bench/stalled-readers.js
 */
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { UIO_READ, UIO_WRITE, V_WORKING } from '../src/client/index.js';
import { encodeHello, encodeRequest } from '../src/protocol/codec.js';
import { encodeFrame } from '../src/protocol/frame.js';
import { startBenchDaemon } from './daemon.js';

const READERS = 200;
const MiB = 1 << 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const daemon = await startBenchDaemon({ memory: '64MiB', createBytes: '1GiB', env: { PAGERD_SERVER_MAX_IN_FLIGHT: '64' } });
const rssMiB = (): number => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${daemon.proc.pid}/status`, 'utf8'))![1]) / 1024);
const c = await daemon.client();
const vmid = await c.vmsCreate(V_WORKING, 4 * MiB);
await c.vmMove(vmid, 0, 4 * MiB, UIO_WRITE, { iov: [new Uint8Array(4 * MiB).fill(1)], offset: 0, resid: 4 * MiB, segflg: 0 });
console.log(`RSS before: ${rssMiB()} MiB`);
const readers: Socket[] = [];
for (let i = 0; i < READERS; i++) {
  const s = netConnect(daemon.socket);
  s.on('error', () => undefined);
  s.pause(); // never reads
  await new Promise((r) => s.once('connect', r));
  s.write(encodeFrame(encodeHello()));
  for (let id = 1; id <= 300; id++) s.write(encodeFrame(encodeRequest({ id, op: 'vmMove', args: [vmid, 0, MiB, UIO_READ, 0, MiB, 0, MiB, new Uint8Array(0)] })));
  readers.push(s);
}
let peak = 0;
for (const started = Date.now(); Date.now() - started < 16_000; await sleep(200)) peak = Math.max(peak, rssMiB());
console.log(`RSS peak: ${peak} MiB; connections left after 16 s: ${(await c.stats()).connections as number}`);
for (const s of readers) s.destroy();
let waited = 0;
for (const after of [3, 10, 30]) {
  await sleep((after - waited) * 1000);
  waited = after;
  console.log(`RSS ${after} s after the readers are gone: ${rssMiB()} MiB`);
}
await c.close();
await daemon.stop();

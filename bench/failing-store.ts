/**
 * The daemon under load while every sync fails (strace injects EIO into fsync and fdatasync):
 * 4 clients write and page out 4 shared segments for DURATION seconds (default 600). Prints, each
 * minute, the daemon's RSS and its unheard page-out failures (one per connection and segment).
 * Needs root and strace.
 *
 *   npm run build && node dist/bench/failing-store.js [DURATION]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { UIO_WRITE, V_WORKING } from '../src/client/index.js';
import { startBenchDaemon } from './daemon.js';

const duration = Number(process.argv[2] ?? 600);
const PAGE = 4096;
const daemon = await startBenchDaemon({ memory: '16MiB', createBytes: '1GiB' });
const rssMiB = (): number => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${daemon.proc.pid}/status`, 'utf8'))![1]) / 1024);
const clients = await Promise.all([0, 1, 2, 3].map(() => daemon.client()));
const vmids = await Promise.all(clients.map((c) => c.vmsCreate(V_WORKING, 256 * PAGE, 0, 0o660)));
const strace = spawn('strace', ['-f', '-p', String(daemon.proc.pid), '-e', 'trace=fsync,fdatasync', '-e', 'inject=fsync,fdatasync:error=EIO', '-o', '/dev/null'], { stdio: 'ignore' });
await new Promise((r) => setTimeout(r, 1000));
const started = Date.now();
let running = true;
let ops = 0;
const loads = clients.map(async (c, i) => {
  const page = new Uint8Array(PAGE).fill(i);
  while (running) {
    const vmid = vmids[(i + ops) % 4];
    await c.vmMove(vmid, (ops % 256) * PAGE, PAGE, UIO_WRITE, { iov: [page], offset: 0, resid: PAGE, segflg: 0 }).catch(() => undefined);
    await c.vmWritep(vmid, 0, 256).catch(() => undefined);
    if (ops % 50 === 0) await c.vmsIowait(vmid).catch(() => undefined);
    ops++;
  }
});
const probe = await daemon.client();
const report = async (): Promise<void> => {
  const s = await probe.stats();
  const failures = (s.counters as { pageOutFailures: number }).pageOutFailures;
  console.log(`t=${Math.round((Date.now() - started) / 1000)} s: RSS ${rssMiB()} MiB, unheard failures ${s.unheardFailures as number}, page-out failures ${failures}, store failed ${s.storeFailed as boolean}`);
};
await report();
const timer = setInterval(() => void report(), 60_000);
await new Promise((r) => setTimeout(r, duration * 1000));
clearInterval(timer);
running = false;
await Promise.all(loads);
await report();
strace.kill('SIGINT');
for (const c of [...clients, probe]) await c.close();
await daemon.stop();

/**
 * pagerd's benchmark suite: the real daemon on a temporary store, each figure the median of
 * several runs (with min and max) next to a baseline measured in the same run, and their ratio.
 *
 *   npm run bench                      # the table
 *   npm run bench -- --json            # the same figures as one JSON document
 *   npm run bench -- --device /dev/loopN --runs 7 --quick
 */
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pagerdColdReads, preparedColdSegment, rawRandomReads } from './cold-pagein.js';
import { startBenchDaemon } from './daemon.js';
import { naiveWrites, pagerdDurablePageout, sequentialWrites } from './durable-pageout.js';
import { RawClient, startEchoServer } from './raw-client.js';
import { pagerdRoundTrips, rawRoundTrips } from './round-trip.js';
import { repeat, summarize, type Summary } from './stats.js';
import { pagerdThroughput, rawThroughput } from './throughput.js';

// The baselines get the same libuv pool as the daemon (set before the pool is first used).
process.env.UV_THREADPOOL_SIZE ??= '16';

const { values: flags } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    device: { type: 'string' },
    runs: { type: 'string', default: '5' },
    quick: { type: 'boolean', default: false },
  },
});
const RUNS = Math.max(5, Number(flags.runs));

interface Row {
  section: string;
  name: string;
  unit: string;
  pagerd: Summary;
  baselineName: string;
  baseline: Summary;
  /** pagerd / baseline of the medians (for latencies: pagerd / baseline too, lower is better). */
  ratio: number;
  target?: string;
  met?: boolean;
}

const rows: Row[] = [];
const log = (msg: string): void => {
  if (!flags.json) process.stderr.write(`${msg}\n`);
};

function row(r: Omit<Row, 'ratio' | 'met'> & { check?: (ratio: number) => boolean }): void {
  const ratio = r.pagerd.median / r.baseline.median;
  const { check, ...rest } = r;
  rows.push({ ...rest, ratio, met: check?.(ratio) });
}

async function main(): Promise<void> {
  const daemon = await startBenchDaemon({ memory: flags.quick ? '256MiB' : '1280MiB', device: flags.device, createBytes: '8GiB' });
  const echo = await startEchoServer(daemon.dir);
  const c = await daemon.client();
  const raw = await RawClient.open(echo.path);
  try {
    log('1. round trip');
    const rtP = await collect(RUNS, () => pagerdRoundTrips(c));
    const rtR = await collect(RUNS, () => rawRoundTrips(raw));
    row({ section: 'round trip', name: 'vmMove 4 KiB read, p50', unit: 'µs', pagerd: summarize(rtP.map((x) => x.p50)), baselineName: 'raw socket ping-pong', baseline: summarize(rtR.map((x) => x.p50)), target: 'ratio ≤ 1.5', check: (x) => x <= 1.5 });
    row({ section: 'round trip', name: 'vmMove 4 KiB read, p99', unit: 'µs', pagerd: summarize(rtP.map((x) => x.p99)), baselineName: 'raw socket ping-pong', baseline: summarize(rtR.map((x) => x.p99)) });

    log('2. pipelined throughput');
    const ops = flags.quick ? 5000 : 20000;
    for (const rw of ['read', 'write'] as const) {
      for (const window of [1, 16, 64]) {
        const p = await repeat(RUNS, () => pagerdThroughput(c, rw, window, ops));
        const b = await repeat(RUNS, () => rawThroughput(raw, rw, window, ops));
        row({ section: 'throughput', name: `vmMove 4 KiB ${rw}, ${window} in flight, 1 process`, unit: 'ops/s', pagerd: p, baselineName: 'raw pipelined echo', baseline: b, ...(window === 16 ? { target: 'ratio ≥ 0.6', check: (x: number) => x >= 0.6 } : {}) });
      }
    }

    log('3. durable page-out');
    const naive = await repeat(RUNS, () => naiveWrites(daemon.dir, flags.quick ? 200 : 1000));
    for (const n of flags.quick ? [1000, 16000] : [1000, 16000, 256000]) {
      const p = await repeat(RUNS, () => pagerdDurablePageout(c, n));
      const seq = await repeat(RUNS, () => sequentialWrites(daemon.dir, n));
      row({ section: 'durable page-out', name: `${n} random pages, vm_write(force) + vms_iowait`, unit: 'pages/s', pagerd: p, baselineName: 'sequential pwrite + 1 fdatasync', baseline: seq, target: 'ratio ≥ 0.7', check: (x) => x >= 0.7 });
      row({ section: 'durable page-out', name: `${n} random pages, against the naive way`, unit: 'pages/s', pagerd: p, baselineName: 'pwrite + fdatasync per page', baseline: naive, target: 'ratio ≥ 10', check: (x) => x >= 10 });
    }

    log('4. cold page-in');
    const coldPages = flags.quick ? 4096 : 16384;
    const vmid = await preparedColdSegment(c, coldPages);
    let seed = 1;
    const p = await repeat(RUNS, () => pagerdColdReads(c, vmid, coldPages, 16, seed++));
    const slots = (await c.stats()).slots as { mapped: number };
    const b = await repeat(RUNS, () => rawRandomReads(daemon.devicePath, slots.mapped, coldPages, 16, seed++));
    row({ section: 'cold page-in', name: `random 4 KiB vmMove reads of non-resident pages, 16 in flight`, unit: 'ops/s', pagerd: p, baselineName: 'raw random pread, 16 in flight', baseline: b, target: 'ratio ≥ 0.6', check: (x) => x >= 0.6 });
    await c.vmsDelete(vmid);
  } finally {
    raw.close();
    echo.proc.kill();
    await c.close();
    await daemon.stop();
    if (flags.device === undefined) rmSync(daemon.dir, { recursive: true, force: true });
  }
  print();
}

async function collect<T>(runs: number, sample: () => Promise<T>): Promise<T[]> {
  await sample();
  const out: T[] = [];
  for (let i = 0; i < runs; i++) out.push(await sample());
  return out;
}

function fmt(x: number): string {
  return x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(x >= 10 ? 1 : 2);
}

function print(): void {
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), runs: RUNS, device: flags.device ?? 'file in a temporary directory', rows }, null, 2)}\n`);
    return;
  }
  const lines = [`pagerd benchmarks: median of ${RUNS} runs [min..max]; ratio = pagerd / baseline`, ''];
  let section = '';
  for (const r of rows) {
    if (r.section !== section) {
      section = r.section;
      lines.push(section);
    }
    const verdict = r.target === undefined ? '' : `  ${r.target}: ${r.met ? 'met' : 'MISSED'}`;
    lines.push(
      `  ${r.name}\n    pagerd   ${fmt(r.pagerd.median)} ${r.unit} [${fmt(r.pagerd.min)}..${fmt(r.pagerd.max)}]\n    ${r.baselineName.padEnd(8)} ${fmt(r.baseline.median)} ${r.unit} [${fmt(r.baseline.min)}..${fmt(r.baseline.max)}]\n    ratio    ${r.ratio.toFixed(2)}${verdict}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();

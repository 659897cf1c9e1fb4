/**
 * pagerd's benchmark suite: the real daemon on a temporary store, each figure the median of
 * several runs (with min and max) next to a baseline measured in the same run, and their ratio.
 *
 *   npm run bench                      # the table
 *   npm run bench -- --json            # the same figures as one JSON document
 *   npm run bench -- --device /dev/loopN --runs 7 --quick
 *   npm run bench -- --only durable,cold    # some sections: round-trip, throughput, shared, nbd, loaded, durable, cold, file-pager, pressure, scale
 */
import { rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { pagerdColdReads, pagerdRandomReads, preparedColdSegment, rawRandomReads } from './cold-pagein.js';
import { V_WORKING, type PagerClient } from '../src/client/index.js';
import { startBenchDaemon, type BenchDaemon } from './daemon.js';
import { naiveWrites, pagerdDurablePageout, sequentialWrites } from './durable-pageout.js';
import { RawClient, startEchoServer } from './raw-client.js';
import { idleLoopDelayP99 } from './idle-loop-delay.js';
import { startPageoutWorkers } from './pageout-load.js';
import { plainPingPong, startPlainPong } from './plain-ping-pong.js';
import { pagerdRoundTrips, rawRoundTrips } from './round-trip.js';
import { interleaved, repeat, summarize, type Summary } from './stats.js';
import { pressureSegment, zipfianLoad } from './pressure.js';
import { buildStore, removeStore, startUp } from './scale.js';
import { fioNbd, haveFioAndNbdkit, withNbdkit, withNodeNbdServer, type FioResult } from './nbd.js';
import { withCpuTime } from './cpu-time.js';
import { floorPageOut, floorRandomReads, modifyAllPages, pagerdFilePageOut, rawGroupedWrites, startFilePager } from './file-pager.js';
import { withNodeFilePagerFloor } from './node-file-pager-floor.js';
import { nbdkitRandread, residentSegment, sharedCopyRate, sharedMoveRate, tryReadRate } from './shared-frames.js';
import { multiProcessThroughput, pagerdThroughput, rawThroughput } from './throughput.js';

// The baselines get the same libuv pool as the daemon (set before the pool is first used).
process.env.UV_THREADPOOL_SIZE ??= '16';

const { values: flags } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    device: { type: 'string' },
    runs: { type: 'string', default: '5' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
});
const RUNS = Math.max(5, Number(flags.runs));

const SECTIONS = ['round-trip', 'throughput', 'shared', 'nbd', 'loaded', 'durable', 'cold', 'file-pager', 'pressure', 'scale'];
const only = flags.only?.split(',');
const unknown = only?.filter((name) => !SECTIONS.includes(name)) ?? [];
if (unknown.length > 0) {
  process.stderr.write(`unknown section ${unknown.join(', ')}: the sections are ${SECTIONS.join(', ')}\n`);
  process.exit(64);
}
const wanted = (section: string): boolean => only === undefined || only.includes(section);

interface Row {
  section: string;
  name: string;
  unit: string;
  pagerd: Summary;
  /** What the `pagerd` figures measured, when a row compares two baselines (printed in its place). */
  subjectName?: string;
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
  if (['round-trip', 'throughput', 'shared', 'nbd', 'loaded', 'durable', 'cold', 'file-pager'].some(wanted)) await sectionsOnOneDaemon();
  if (wanted('pressure')) await pressure();
  if (wanted('scale')) await scale();
  print();
}

/** Sections 1–4 share one daemon and one echo server. */
async function sectionsOnOneDaemon(): Promise<void> {
  const daemon = await startBenchDaemon({ memory: flags.quick ? '256MiB' : '1280MiB', device: flags.device, createBytes: '8GiB' });
  const echo = await startEchoServer(daemon.dir);
  const c = await daemon.client();
  const raw = await RawClient.open(echo.path);
  try {
    if (wanted('round-trip')) await roundTrip(c, raw, daemon.dir);
    if (wanted('throughput')) await throughput(c, raw, daemon.socket, echo.path);
    if (wanted('shared')) await sharedFrames(daemon);
    if (wanted('nbd')) await nbdRows(c, daemon);
    if (wanted('loaded')) await underLoad(c, daemon.socket);
    if (wanted('durable')) await durablePageout(c, daemon.dir);
    if (wanted('cold')) await coldPagein(c, daemon.devicePath);
    if (wanted('file-pager')) await filePager(c, daemon);
  } finally {
    raw.close();
    echo.proc.kill();
    await c.close();
    await daemon.stop();
    if (flags.device === undefined) rmSync(daemon.dir, { recursive: true, force: true });
  }
}

/**
 * 1. One request at a time (shared frames off): latency against a plain ping-pong with no project
 * code in it, and against the framed echo (the same framing code as pagerd's) to show what the
 * framing costs.
 */
async function roundTrip(c: PagerClient, raw: RawClient, dir: string): Promise<void> {
  log('1. round trip');
  const pong = await startPlainPong(dir);
  try {
    const rtP = await collect(RUNS, () => pagerdRoundTrips(c));
    const rtPlain = await collect(RUNS, () => plainPingPong(pong.path, 2000));
    const rtR = await collect(RUNS, () => rawRoundTrips(raw));
    row({ section: 'round trip', name: 'vmMove 4 KiB read, p50', unit: 'µs', pagerd: summarize(rtP.map((x) => x.p50)), baselineName: 'plain ping-pong (16 B out, 4 KiB back)', baseline: summarize(rtPlain.map((x) => x.p50)), target: 'ratio ≤ 1.5', check: (x) => x <= 1.5 });
    row({ section: 'round trip', name: 'vmMove 4 KiB read, p50', unit: 'µs', pagerd: summarize(rtP.map((x) => x.p50)), baselineName: 'framed echo (pagerd framing)', baseline: summarize(rtR.map((x) => x.p50)) });
    row({ section: 'round trip', name: 'vmMove 4 KiB read, p99', unit: 'µs', pagerd: summarize(rtP.map((x) => x.p99)), baselineName: 'plain ping-pong (16 B out, 4 KiB back)', baseline: summarize(rtPlain.map((x) => x.p99)) });
  } finally {
    pong.proc.kill();
  }
}

/** 2. 1, 16 and 64 requests in flight, from 1 and 4 processes, against a raw pipelined echo. */
async function throughput(c: PagerClient, raw: RawClient, socket: string, echoPath: string): Promise<void> {
  log('2. pipelined throughput');
  const ops = flags.quick ? 5000 : 20000;
  for (const rw of ['read', 'write'] as const) {
    for (const window of [1, 16, 64]) {
      const p = await repeat(RUNS, () => pagerdThroughput(c, rw, window, ops));
      const b = await repeat(RUNS, () => rawThroughput(raw, rw, window, ops));
      row({ section: 'throughput', name: `vmMove 4 KiB ${rw}, ${window} in flight, 1 process`, unit: 'ops/s', pagerd: p, baselineName: 'raw pipelined echo', baseline: b, ...(window === 16 ? { target: 'ratio ≥ 0.6', check: (x: number) => x >= 0.6 } : {}) });
    }
  }

  for (const rw of ['read', 'write'] as const) {
    for (const window of [1, 16, 64]) {
      const p = await repeat(RUNS, () => multiProcessThroughput('pagerd', socket, rw, 4, window, ops / 4));
      const b = await repeat(RUNS, () => multiProcessThroughput('raw', echoPath, rw, 4, window, ops / 4));
      row({ section: 'throughput', name: `vmMove 4 KiB ${rw}, ${window} in flight each, 4 processes`, unit: 'ops/s', pagerd: p, baselineName: 'raw pipelined echo', baseline: b, ...(window === 16 ? { target: 'ratio ≥ 0.6', check: (x: number) => x >= 0.6 } : {}) });
    }
  }
}

/** 2b. Resident reads from shared frames, against a copy out of shared memory and against nbdkit at the same queue depth. */
async function sharedFrames(daemon: BenchDaemon): Promise<void> {
  log('2b. shared frames');
  const c = await daemon.client({ sharedFrames: true });
  try {
    const vmid = await residentSegment(c);
    const ops = flags.quick ? 200_000 : 1_000_000;
    const tried = await collect(RUNS, async () => tryReadRate(c, vmid, ops));
    const copies = await collect(RUNS, async () => sharedCopyRate(ops));
    row({ section: 'shared frames', name: 'tryReadResident 4 KiB, 1 process', unit: 'ops/s', pagerd: summarize(tried.map((t) => t.rate)), baselineName: 'a bare copy of 4 KiB out of shared memory', baseline: summarize(copies.map((t) => t.rate)), target: '≥ 1,000,000/s (absolute)', check: () => summarize(tried.map((t) => t.rate)).median >= 1e6 });
    row({ section: 'shared frames', name: 'tryReadResident 4 KiB, p50 of one copy', unit: 'µs', pagerd: summarize(tried.map((t) => t.p50)), baselineName: 'a bare copy of 4 KiB out of shared memory', baseline: summarize(copies.map((t) => t.p50)), target: '< 5 µs (absolute)', check: () => summarize(tried.map((t) => t.p50)).median < 5 });
    const moves = await repeat(RUNS, () => sharedMoveRate(c, vmid, 16, flags.quick ? 50_000 : 200_000));
    const nbdkit: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const iops = await nbdkitRandread(daemon.dir, 16, flags.quick ? 1 : 3);
      if (iops !== undefined) nbdkit.push(iops);
    }
    if (nbdkit.length === 0) log('  (fio or nbdkit not installed: no nbdkit baseline; apt-get install fio nbdkit)');
    else row({ section: 'shared frames', name: 'vmMove 4 KiB read, 16 in flight, 1 process', unit: 'ops/s', pagerd: moves, baselineName: 'nbdkit file plugin, fio nbd randread QD16', baseline: summarize(nbdkit), target: 'ratio ≥ 5', check: (x) => x >= 5 });
    await c.vmsDelete(vmid);
  } finally {
    await c.close();
  }
}

/**
 * 2c. A segment as an NBD disk: fio's nbd engine against pagerd's NBD socket and against nbdkit's
 * file plugin on a page-cache-hot file, 4 KiB random reads and writes over a resident 256 MiB.
 */
async function nbdRows(c: PagerClient, daemon: BenchDaemon): Promise<void> {
  log('2c. NBD');
  if (!haveFioAndNbdkit()) return log('  (fio or nbdkit not installed: no NBD rows; apt-get install fio nbdkit)');
  const vmid = await c.vmsCreate(V_WORKING, 256 * 1024 * 1024);
  const uri = `nbd+unix:///${vmid}?socket=${daemon.nbdSocket}`;
  const seconds = flags.quick ? 1 : 3;
  fioNbd(uri, 'randwrite', 16, seconds); // every page resident before measuring
  for (const rw of ['randread', 'randwrite'] as const) {
    for (const depth of [1, 16]) {
      const ours: FioResult[] = [];
      const theirs: FioResult[] = [];
      const floor: FioResult[] = [];
      for (let i = 0; i < RUNS; i++) {
        ours.push(fioNbd(uri, rw, depth, seconds));
        theirs.push(await withNbdkit(daemon.dir, (u) => fioNbd(u, rw, depth, seconds)));
        if (depth === 1) floor.push(await withNodeNbdServer(daemon.dir, (u) => fioNbd(u, rw, depth, seconds)));
      }
      const name = `fio nbd 4 KiB ${rw}, QD${depth}`;
      row({ section: 'NBD', name, unit: 'ops/s', pagerd: summarize(ours.map((r) => r.iops)), baselineName: 'nbdkit file plugin, same fio job', baseline: summarize(theirs.map((r) => r.iops)), target: 'ratio ≥ 1.0', check: (x) => x >= 1 });
      if (depth === 1) {
        row({ section: 'NBD', name: `${name}, p50 latency`, unit: 'µs', pagerd: summarize(ours.map((r) => r.p50)), baselineName: 'nbdkit file plugin, same fio job', baseline: summarize(theirs.map((r) => r.p50)) });
        // At one in flight the runtime's own cost per request shows: the Node floor against nbdkit.
        row({ section: 'NBD', name: `${name}, the Node floor against nbdkit`, unit: 'ops/s', subjectName: 'minimal Node NBD server on a Buffer (bench/node-nbd-server.ts)', pagerd: summarize(floor.map((r) => r.iops)), baselineName: 'nbdkit file plugin, same fio job', baseline: summarize(theirs.map((r) => r.iops)) });
        row({ section: 'NBD', name: `${name}, against the Node floor`, unit: 'ops/s', pagerd: summarize(ours.map((r) => r.iops)), baselineName: 'minimal Node NBD server on a Buffer, same fio job', baseline: summarize(floor.map((r) => r.iops)) });
      }
    }
  }
  // Durable writes: a flush after each write, from one job and from 16 at once (their flushes share page-out cycles).
  for (const jobs of [1, 16]) {
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      ours.push(fioNbd(uri, 'randwrite', 1, seconds, { jobs, flushEach: true }).iops);
      theirs.push(await withNbdkit(daemon.dir, (u) => fioNbd(u, 'randwrite', 1, seconds, { jobs, flushEach: true }).iops));
    }
    const target = jobs === 1 ? 0.4 : 2;
    row({ section: 'NBD', name: `fio nbd 4 KiB randwrite + flush, ${jobs} job${jobs === 1 ? '' : 's'}`, unit: 'ops/s', pagerd: summarize(ours), baselineName: 'nbdkit file plugin, same fio job', baseline: summarize(theirs), target: `ratio ≥ ${target}`, check: (x) => x >= target });
  }
  await c.vmsDelete(vmid);
}

/**
 * 2d. Resident reads (socket, one at a time) and the daemon's event-loop delay while 4 other
 * client processes write and force page-outs continuously, against the same at rest.
 */
async function underLoad(c: PagerClient, socket: string): Promise<void> {
  log('2d. under page-out load');
  const delay = async (): Promise<number> => Number(/^pagerd_event_loop_delay_p99_seconds (\S+)$/m.exec(await c.metrics())?.[1] ?? NaN) * 1e6;
  const restReads: number[] = [];
  const restDelay: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    await delay(); // starts a window
    restReads.push((await pagerdRoundTrips(c)).p99);
    restDelay.push(await delay());
  }
  const workers = await startPageoutWorkers(socket, 4);
  const loadReads: number[] = [];
  const loadDelay: number[] = [];
  const idleDelay: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 500)); // the load under way
    for (let i = 0; i < RUNS; i++) {
      await delay();
      loadReads.push((await pagerdRoundTrips(c)).p99);
      loadDelay.push(await delay());
      idleDelay.push(await idleLoopDelayP99());
    }
  } finally {
    await workers.stop();
  }
  row({ section: 'under page-out load', name: 'vmMove 4 KiB read p99, 4 clients forcing page-outs', unit: 'µs', pagerd: summarize(loadReads), baselineName: 'the same at rest', baseline: summarize(restReads), target: 'ratio ≤ 3', check: (x) => x <= 3 });
  row({ section: 'under page-out load', name: 'daemon event-loop delay p99, 4 clients forcing page-outs', unit: 'µs', pagerd: summarize(loadDelay), baselineName: 'the same at rest', baseline: summarize(restDelay), target: '≤ 500 µs (absolute)', check: () => summarize(loadDelay).median <= 500 });
  // What the machine's scheduler alone costs a loop under this load: a process with no work of its own.
  row({ section: 'under page-out load', name: 'daemon event-loop delay p99, 4 clients forcing page-outs', unit: 'µs', pagerd: summarize(loadDelay), baselineName: 'an idle Node process under the same load', baseline: summarize(idleDelay) });
}

/** 3. vm_write(force) + vms_iowait of N random pages against sequential and naive writes. */
async function durablePageout(c: PagerClient, dir: string): Promise<void> {
  log('3. durable page-out');
  const naive = await repeat(RUNS, () => naiveWrites(dir, flags.quick ? 200 : 1000));
  for (const n of flags.quick ? [1000, 16000] : [1000, 16000, 256000]) {
    const before = await commitTotals(c);
    const p = await repeat(RUNS, () => pagerdDurablePageout(c, n));
    const after = await commitTotals(c);
    const seq = await repeat(RUNS, () => sequentialWrites(dir, n));
    row({ section: 'durable page-out', name: `${n} random pages, vm_write(force) + vms_iowait`, unit: 'pages/s', pagerd: p, baselineName: 'sequential pwrite + 1 fdatasync', baseline: seq, target: 'ratio ≥ 0.7', check: (x) => x >= 0.7 });
    row({ section: 'durable page-out', name: `${n} random pages, against the naive way`, unit: 'pages/s', pagerd: p, baselineName: 'pwrite + fdatasync per page', baseline: naive, target: 'ratio ≥ 10', check: (x) => x >= 10 });
    // The metadata commit's share of a page-out (its transaction on the event loop and its WAL sync in the pool), from the daemon's own histogram.
    const perPage = ((after.seconds - before.seconds) / (after.pages - before.pages)) * 1e6;
    row({ section: 'durable page-out', name: `${n} random pages, metadata commit per page`, unit: 'µs', pagerd: summarize([perPage]), baselineName: 'pwrite + fdatasync of one page', baseline: summarize([1e6 / naive.median]) });
  }
}

/** Seconds spent in metadata commits and pages paged out so far, from the daemon's metrics. */
async function commitTotals(c: PagerClient): Promise<{ seconds: number; pages: number }> {
  const text = await c.metrics();
  const value = (pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? 0);
  return { seconds: value(/^pagerd_device_io_seconds_sum\{op="commit"\} (\S+)$/m), pages: value(/^pagerd_page_outs_total (\S+)$/m) };
}

/** 4. Random reads of non-resident pages against raw random reads of the device. */
async function coldPagein(c: PagerClient, devicePath: string): Promise<void> {
  log('4. cold page-in');
  const coldPages = flags.quick ? 4096 : 16384;
  const vmid = await preparedColdSegment(c, coldPages);
  let seed = 1;
  const p = await repeat(RUNS, () => pagerdColdReads(c, vmid, coldPages, 16, seed++));
  const slots = (await c.stats()).slots as { mapped: number };
  const b = await repeat(RUNS, () => rawRandomReads(devicePath, slots.mapped, coldPages, 16, seed++));
  row({ section: 'cold page-in', name: `random 4 KiB vmMove reads of non-resident pages, 16 in flight`, unit: 'ops/s', pagerd: p, baselineName: 'raw random pread, 16 in flight', baseline: b, target: 'ratio ≥ 0.6', check: (x) => x >= 0.6 });
  await c.vmsDelete(vmid);
}

/** Warm-up of the client file system's rows, both sides (see filePager). */
const FILE_PAGER_WARM_UP_MS = 4000;

/**
 * 4b. A client segment paged by the reference client file system (pagerctl map-file, its own
 * process): page-ins and page-outs against raw positional I/O of the same file, the same request
 * sizes and the same sync discipline.
 */
async function filePager(c: PagerClient, daemon: BenchDaemon): Promise<void> {
  log('4b. client file system (pagerctl map-file)');
  const pages = flags.quick ? 4096 : 16384;
  const pager = await startFilePager(daemon.socket, daemon.dir, pages);
  try {
    let seed = 100;
    // The CPU each page-in or page-out costs all three processes (daemon, map-file, this client)
    // bounds the rate: at most the machine's cores divided by it, however well they overlap.
    // The first round of 16,384 page-ins runs at about half the rate of the next ones (11-14k
    // against 20-25k a second): frames touched for the first time, three processes' code compiling.
    // pagerd, raw I/O and the Node floor (the same page-ins and page-outs through the least Node
    // processes do, no project code) take turns, round by round: they meet the same moments of
    // this shared machine.
    const [inCpu, rawCpu, floorInCpu, outCpu, rawOutCpu, floorOutCpu]: number[][] = [[], [], [], [], [], []];
    const [[inP, inB, inF], [outP, outB, outF]] = await withNodeFilePagerFloor(daemon.dir, pager.file, async (floor) => [
      await interleaved(
        RUNS,
        [
          async () => {
            const rate = await timedCpu(inCpu, pages, [daemon.proc.pid!, pager.proc.pid!], () => pagerdRandomReads(c, pager.vmid, pages, 16, seed++));
            await c.vmFlushp(pager.vmid, 0, pages); // cold again for the next round
            return rate;
          },
          () => timedCpu(rawCpu, pages, [], () => rawRandomReads(pager.file, pages - 1, pages, 16, seed++)),
          () => timedCpu(floorInCpu, pages, floor.pids, () => floorRandomReads(floor.pageIn, pages, 16, seed++)),
        ],
        FILE_PAGER_WARM_UP_MS,
      ),
      // V8 settles the page-out path of a client file system only after several rounds of 16,384
      // pages (rounds 1-6 ran at 87-167k pages/s, later ones at 160-248k): all warm up longer.
      await interleaved(
        RUNS,
        [
          async () => {
            await modifyAllPages(c, pager.vmid, pages);
            return timedCpu(outCpu, pages, [daemon.proc.pid!, pager.proc.pid!], () => pagerdFilePageOut(c, pager.vmid, pages));
          },
          () => timedCpu(rawOutCpu, pages, [], () => rawGroupedWrites(pager.file, pages, 64, 16)),
          () => timedCpu(floorOutCpu, pages, floor.pids, () => floorPageOut(floor.pageOut, pages, 64, 16)),
        ],
        FILE_PAGER_WARM_UP_MS,
      ),
    ]);
    const cpus = `(${availableParallelism()} CPUs here)`;
    const FLOOR = 'Node floor (bench/node-file-pager-floor.ts)';
    const section = 'client file system';
    row({ section, name: 'page-in: random 4 KiB vmMove reads through map-file, 16 in flight', unit: 'ops/s', pagerd: inP, baselineName: 'raw random pread of the file, 16 in flight', baseline: inB, target: 'ratio ≥ 0.6', check: (x) => x >= 0.6 });
    row({ section, name: 'page-in, the Node floor against raw: client, server and file system processes, no project code', unit: 'ops/s', subjectName: FLOOR, pagerd: inF, baselineName: 'raw random pread of the file, 16 in flight', baseline: inB });
    row({ section, name: 'page-in, pagerd against the Node floor', unit: 'ops/s', pagerd: inP, baselineName: FLOOR, baseline: inF });
    row({ section, name: `page-in: CPU time per page-in, daemon + map-file + client ${cpus}`, unit: 'µs', pagerd: summarize(inCpu.slice(-RUNS)), baselineName: 'raw random pread: CPU time per read, its thread pool included', baseline: summarize(rawCpu.slice(-RUNS)) });
    row({ section, name: `page-in: CPU time per page-in, the Node floor's three processes ${cpus}`, unit: 'µs', subjectName: FLOOR, pagerd: summarize(floorInCpu.slice(-RUNS)), baselineName: 'raw random pread', baseline: summarize(rawCpu.slice(-RUNS)) });
    row({ section, name: `page-out: vmWritep + vms_iowait of ${pages} pages through map-file`, unit: 'pages/s', pagerd: outP, baselineName: 'raw 256 KiB pwrite + grouped fdatasync, 16 in flight', baseline: outB, target: 'ratio ≥ 0.6', check: (x) => x >= 0.6 });
    row({ section, name: 'page-out, the Node floor against raw: a file system process told to write 256 KiB of the file image it holds in memory, 16 in flight', unit: 'pages/s', subjectName: FLOOR, pagerd: outF, baselineName: 'raw 256 KiB pwrite + grouped fdatasync, 16 in flight', baseline: outB });
    row({ section, name: 'page-out, pagerd against the Node floor', unit: 'pages/s', pagerd: outP, baselineName: FLOOR, baseline: outF });
    row({ section, name: `page-out: CPU time per page, daemon + map-file + client ${cpus}`, unit: 'µs', pagerd: summarize(outCpu.slice(-RUNS)), baselineName: 'raw pwrite + grouped fdatasync: CPU time per page', baseline: summarize(rawOutCpu.slice(-RUNS)) });
    row({ section, name: `page-out: CPU time per page, the Node floor's processes (the benchmark's in the daemon's place) ${cpus}`, unit: 'µs', subjectName: FLOOR, pagerd: summarize(floorOutCpu.slice(-RUNS)), baselineName: 'raw pwrite + grouped fdatasync', baseline: summarize(rawOutCpu.slice(-RUNS)) });
  } finally {
    await pager.stop();
  }
}

/** Runs `work` (which answers a rate of `ops` operations) and notes in `perOp` the CPU time per operation, in µs, of this process and `pids`. */
async function timedCpu(perOp: number[], ops: number, pids: number[], work: () => Promise<number>): Promise<number> {
  const { result, cpuSeconds } = await withCpuTime(pids, work);
  perOp.push((cpuSeconds / ops) * 1e6);
  return result;
}

/** 5. A zipfian working set four times the frame pool, against the same load with everything resident. */
async function pressure(): Promise<void> {
  log('5. under memory pressure');
  const poolPages = flags.quick ? 1024 : 4096;
  const workingSet = 4 * poolPages;
  const ops = flags.quick ? 10000 : 40000;
  const results: Record<'tight' | 'roomy', Awaited<ReturnType<typeof zipfianLoad>>[]> = { tight: [], roomy: [] };
  for (const [kind, pages] of [['tight', poolPages], ['roomy', workingSet + 1024]] as const) {
    const d = await startBenchDaemon({ memory: `${(pages * 4096) / 1024 / 1024}MiB`, device: flags.device, createBytes: '1GiB', env: { PAGERD_MEMORY_MIN_FREE: '64', PAGERD_MEMORY_MAX_FREE: '256' } });
    const c = await d.client();
    try {
      const vmid = await pressureSegment(c, workingSet);
      await zipfianLoad(c, vmid, workingSet, ops, 99); // warm-up: every page touched at least once is resident when it fits
      for (let i = 0; i < RUNS; i++) results[kind].push(await zipfianLoad(c, vmid, workingSet, ops, i + 1));
    } finally {
      await c.close();
      await d.stop();
      if (flags.device === undefined) rmSync(d.dir, { recursive: true, force: true });
    }
  }
  const pick = (kind: 'tight' | 'roomy', k: 'opsPerSecond' | 'hitRatio' | 'pageInsPerOp' | 'pageOutsPerOp') => summarize(results[kind].map((r) => r[k]));
  const name = `zipfian (s=0.99) 70/30 read/write, working set ${workingSet} pages = 4 × pool`;
  row({ section: 'memory pressure', name: `${name}: ops/s`, unit: 'ops/s', pagerd: pick('tight', 'opsPerSecond'), baselineName: 'all resident', baseline: pick('roomy', 'opsPerSecond') });
  row({ section: 'memory pressure', name: `${name}: hit ratio`, unit: '', pagerd: pick('tight', 'hitRatio'), baselineName: 'all resident', baseline: pick('roomy', 'hitRatio') });
  row({ section: 'memory pressure', name: `${name}: page-ins per op`, unit: '', pagerd: pick('tight', 'pageInsPerOp'), baselineName: 'all resident', baseline: pick('roomy', 'pageInsPerOp') });
  row({ section: 'memory pressure', name: `${name}: page-outs per op`, unit: '', pagerd: pick('tight', 'pageOutsPerOp'), baselineName: 'all resident', baseline: pick('roomy', 'pageOutsPerOp') });
}

/** 6. Start-up time and RSS with 0, 1 million and 10 million mapped pages; metadata bytes per page. */
async function scale(): Promise<void> {
  log('6. scale');
  const memory = '64MiB';
  const sizes = flags.quick ? [0, 1_000_000] : [0, 1_000_000, 10_000_000];
  const startups = new Map<number, Summary>();
  const rss = new Map<number, Summary>();
  const dbBytes = new Map<number, number>();
  for (const n of sizes) {
    log(`   building a store with ${n} mapped pages`);
    const built = await buildStore(n);
    dbBytes.set(n, built.dbBytes);
    try {
      await startUp(built.dir, memory); // warm the page cache, as a restart would find it
      const samples = [];
      for (let i = 0; i < RUNS; i++) samples.push(await startUp(built.dir, memory));
      startups.set(n, summarize(samples.map((s) => s.ms)));
      rss.set(n, summarize(samples.map((s) => s.rssBytes / 1048576)));
    } finally {
      removeStore(built.dir);
    }
  }
  const largest = sizes[sizes.length - 1];
  for (const n of sizes.slice(1)) {
    row({ section: 'scale', name: `start-up with ${n.toLocaleString('en-US')} mapped pages`, unit: 'ms', pagerd: startups.get(n)!, baselineName: 'empty store', baseline: startups.get(0)!, ...(n === 10_000_000 ? { target: '< 1000 ms (absolute)', check: () => startups.get(n)!.median < 1000 } : {}) });
    row({ section: 'scale', name: `RSS after start-up with ${n.toLocaleString('en-US')} mapped pages`, unit: 'MiB', pagerd: rss.get(n)!, baselineName: 'empty store', baseline: rss.get(0)!, target: 'RSS ≤ pool (64 MiB) + 100 MiB', check: () => rss.get(n)!.median <= 164 });
  }
  const perPage = (dbBytes.get(largest)! - dbBytes.get(0)!) / largest;
  const memPerPage = ((rss.get(largest)!.median - rss.get(0)!.median) * 1048576) / largest;
  const one = (x: number): Summary => ({ median: x, min: x, max: x, runs: 1 });
  row({ section: 'scale', name: `metadata bytes per mapped page in SQLite (${largest.toLocaleString('en-US')} pages)`, unit: 'B', pagerd: one(perPage), baselineName: 'one page of data', baseline: one(4096) });
  row({ section: 'scale', name: `daemon memory per mapped page (RSS growth over the empty store)`, unit: 'B', pagerd: one(Math.max(0, memPerPage)), baselineName: 'one page of data', baseline: one(4096) });
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
      `  ${r.name}\n    ${(r.subjectName ?? 'pagerd').padEnd(8)} ${fmt(r.pagerd.median)} ${r.unit} [${fmt(r.pagerd.min)}..${fmt(r.pagerd.max)}]\n    ${r.baselineName.padEnd(8)} ${fmt(r.baseline.median)} ${r.unit} [${fmt(r.baseline.min)}..${fmt(r.baseline.max)}]\n    ratio    ${r.ratio.toFixed(2)}${verdict}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();

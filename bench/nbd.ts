import { execFileSync, fork, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** What one fio run over NBD measured: operations per second and the p50 completion latency (µs). */
export interface FioResult {
  iops: number;
  p50: number;
}

const DISK_MIB = 256;

/** True when fio and nbdkit are installed (the NBD rows need both). */
export function haveFioAndNbdkit(): boolean {
  return existsSync('/usr/bin/fio') && ['/usr/sbin/nbdkit', '/usr/bin/nbdkit'].some((p) => existsSync(p));
}

/**
 * fio's nbd engine against `uri`: 4 KiB `rw` (randread, randwrite) at `iodepth` for `seconds`, over
 * the first 256 MiB; `jobs` connections at once; with `flushEach`, a flush after every write.
 */
export function fioNbd(uri: string, rw: 'randread' | 'randwrite', iodepth: number, seconds: number, { jobs = 1, flushEach = false } = {}): FioResult {
  const out = execFileSync(
    'fio',
    [
      '--name=nbd',
      '--ioengine=nbd',
      `--uri=${uri}`,
      `--rw=${rw}`,
      '--bs=4k',
      `--size=${DISK_MIB}M`,
      `--iodepth=${iodepth}`,
      `--numjobs=${jobs}`,
      '--group_reporting',
      ...(flushEach ? ['--fsync=1'] : []), // a flush after every write
      '--time_based',
      `--runtime=${seconds}`,
      '--output-format=json',
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const job = (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Record<'read' | 'write', { iops: number; clat_ns: { percentile: Record<string, number> } }>[] }).jobs[0];
  const side = rw === 'randread' ? job.read : job.write;
  return { iops: side.iops, p50: side.clat_ns.percentile['50.000000'] / 1e3 };
}

/**
 * Runs `measure` against nbdkit's file plugin serving a page-cache-hot 256 MiB file in `dir` (the
 * baseline of the NBD rows: the same client, a C server, no page cache of its own).
 */
export async function withNbdkit<T>(dir: string, measure: (uri: string) => T): Promise<T> {
  const file = join(dir, 'nbdkit-disk.img');
  const socket = join(dir, 'nbdkit.sock');
  if (!existsSync(file)) {
    const fd = openSync(file, 'w');
    const chunk = Buffer.alloc(1 << 20, 7);
    for (let i = 0; i < DISK_MIB; i++) writeSync(fd, chunk);
    closeSync(fd);
  }
  readFileSync(file); // in the page cache
  rmSync(socket, { force: true });
  const nbdkit = spawn('nbdkit', ['-U', socket, '-f', 'file', `file=${file}`], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 20));
    return measure(`nbd+unix:///?socket=${socket}`);
  } finally {
    nbdkit.kill();
  }
}

/**
 * Runs `measure` against the Node floor (node-nbd-server.ts, its own process): the same client
 * against the least an NBD server on Node does, so a row says how much of pagerd's gap to nbdkit
 * is the runtime's.
 */
export async function withNodeNbdServer<T>(dir: string, measure: (uri: string) => T): Promise<T> {
  const socket = join(dir, 'node-nbd.sock');
  const server = fork(join(import.meta.dirname, 'node-nbd-server.js'), [socket], { stdio: 'ignore' });
  try {
    await new Promise((resolve, reject) => {
      server.once('message', resolve);
      server.once('exit', (code) => reject(new Error(`bench/node-nbd-server.js exited with ${code} before it listened`)));
    });
    return measure(`nbd+unix:///?socket=${socket}`);
  } finally {
    server.kill();
  }
}

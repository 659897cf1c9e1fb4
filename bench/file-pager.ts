import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { UIO_WRITE, type PagerClient } from '../src/client/index.js';
import { GroupCommit } from '../src/group-commit.js';
import { shuffle } from './durable-pageout.js';
import type { FloorClient } from './node-file-pager-floor.js';
import { pipelined } from './throughput.js';

const PAGE = 4096;
const PAGERCTL = join(import.meta.dirname, '../src/cli/pagerctl.js');

/** The reference client file system (pagerctl map-file) serving a new file of `pages` pages, in its own process. */
export async function startFilePager(socket: string, dir: string, pages: number): Promise<{ file: string; vmid: number; proc: ChildProcess; stop(): Promise<void> }> {
  const file = join(dir, 'file-pager.bin');
  writeFileSync(file, Buffer.alloc(pages * PAGE, 1));
  const proc = spawn(process.execPath, [PAGERCTL, '--socket', socket, '--json', 'map-file', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      if (out.includes('\n')) {
        clearInterval(poll);
        resolve();
      }
    }, 10);
    proc.once('exit', (code) => {
      clearInterval(poll);
      reject(new Error(`pagerctl map-file exited with ${code}`));
    });
  });
  const { vmid } = JSON.parse(out) as { vmid: number };
  return {
    file,
    vmid,
    proc,
    stop: async () => {
      proc.kill('SIGINT');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

/** Writes every page of the segment (resident and modified: what pagerdFilePageOut pages out). */
export async function modifyAllPages(c: PagerClient, vmid: number, pages: number): Promise<void> {
  const chunk = new Uint8Array(256 * PAGE).fill(Math.floor(Math.random() * 255) + 1);
  for (let p = 0; p < pages; p += 256) {
    const bytes = Math.min(256, pages - p) * PAGE;
    await c.vmMove(vmid, p * PAGE, bytes, UIO_WRITE, { iov: [chunk.subarray(0, bytes)], offset: 0, resid: bytes, segflg: 0 });
  }
}

/** Timed: vmWritep of every page of the segment (modifyAllPages first) and vms_iowait. Pages/s. */
export async function pagerdFilePageOut(c: PagerClient, vmid: number, pages: number): Promise<number> {
  const start = process.hrtime.bigint();
  await c.vmWritep(vmid, 0, pages);
  await c.vmsIowait(vmid);
  return pages / (Number(process.hrtime.bigint() - start) / 1e9);
}

/**
 * The file pager's page-outs done by hand: positional writes of `requestPages` pages, `window`
 * in flight, each followed by an fdatasync shared with the writes answered while one runs (the
 * pager's group commit). Pages/s.
 */
export async function rawGroupedWrites(file: string, pages: number, requestPages: number, window: number): Promise<number> {
  const fh = await open(file, 'r+');
  const syncs = new GroupCommit();
  const data = Buffer.alloc(requestPages * PAGE, 7);
  const requests = Math.ceil(pages / requestPages);
  const rate = await pipelined(requests, window, async (i) => {
    await fh.write(data, 0, data.length, i * requestPages * PAGE);
    await syncs.request(() => fh.datasync());
  });
  await fh.close();
  return (rate * pages) / requests;
}

/** The Node floor's page-ins (bench/node-file-pager-floor.ts): random 4 KiB reads of the file's pages, `window` in flight. Ops/s. */
export async function floorRandomReads(client: FloorClient, pages: number, window: number, seed: number): Promise<number> {
  const order = shuffle(pages, seed);
  const buffers = Array.from({ length: window }, () => Buffer.alloc(PAGE));
  return pipelined(pages, window, (i) => client.read(order[i] * PAGE, buffers[i % window]));
}

/** The Node floor's page-outs: every page of the file in writes of `requestPages` pages, `window` in flight, each answered once durable. Pages/s. */
export async function floorPageOut(client: FloorClient, pages: number, requestPages: number, window: number): Promise<number> {
  const requests = Math.ceil(pages / requestPages);
  const rate = await pipelined(requests, window, (i) => client.write(i * requestPages * PAGE, Math.min(requestPages, pages - i * requestPages) * PAGE));
  return (rate * pages) / requests;
}

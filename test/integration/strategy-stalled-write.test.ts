import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UIO_WRITE, V_WORKING, type PagerClient } from '../../src/client/index.js';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';
import { PAGERCTL, startMapFile, type MapFileProcess } from '../support/map-file.js';
import { storeDir } from '../support/store-files.js';

/**
 * A file system whose page-out write stalls past strategy.timeoutMs, for real: pagerctl map-file
 * under strace, its first positional write (a page-out by frame reference, read from the daemon's
 * shared frames) delayed. One libuv thread, so the first pwrite or pwritev is the only one delayed
 * (strace counts per thread); and so a later write queues behind the stalled one in map-file
 * anyway: that map-file rebinds only after the stalled write is checked by the frames held then.
 */
const PAGE = 4096;
const PAGES = 64;
const TIMEOUT_MS = 1000;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(condition: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

function stalledMapFile(socket: string, file: string, stallMs: number): Promise<MapFileProcess> {
  const strace = ['strace', '-f', '-qq', '-o', '/dev/null', '-e', `inject=pwrite64,pwritev:delay_enter=${stallMs * 1000}:when=1`];
  return startMapFile(socket, file, [], ['env', 'UV_THREADPOOL_SIZE=1', ...strace, process.execPath, PAGERCTL]);
}

/** The map-file process strace runs. */
function tracee(fs: MapFileProcess): number {
  return Number(execFileSync('pgrep', ['-P', String(fs.proc.pid)]).toString().trim());
}

async function heldForFailedDevices(c: PagerClient): Promise<number> {
  const held = (await c.stats()).framesHeldForFailedDevices as Record<string, number>;
  return Object.values(held).reduce((a, b) => a + b, 0);
}

async function writePages(c: PagerClient, vmid: number, first: number, count: number, byte: number): Promise<void> {
  await c.vmMove(vmid, first * PAGE, count * PAGE, UIO_WRITE, uio(new Uint8Array(count * PAGE).fill(byte)));
}

let daemon: RunningDaemon;
beforeAll(async () => {
  daemon = await startDaemon({ memory: '16MiB', env: { PAGERD_STRATEGY_TIMEOUT_MS: String(TIMEOUT_MS) } });
});
afterAll(async () => {
  expect(await daemon.stop()).toBe(0);
});

describe('a page-out by frame reference still being written after its device failed', () => {
  it("writes the page-out's own bytes, never a frame reused since; writers do not wait for it; map-file rebinds only once it is done, so it never lands over a newer write", async () => {
    const file = join(storeDir('pagerd-stalled-'), 'data.bin');
    writeFileSync(file, Buffer.alloc(PAGES * PAGE, 'A'));
    const fs = await stalledMapFile(daemon.socket, file, 5000);
    const c = await daemon.client();
    await writePages(c, fs.vmid, 0, PAGES, 0x42); // 'B'
    await c.vmWritep(fs.vmid, 0, PAGES); // one request: its write stalls
    await expect(c.vmsIowait(fs.vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' });
    expect(await heldForFailedDevices(c)).toBe(PAGES);

    // Pages 32..63 are written again at once: each moves to another frame, the file system keeps reading the old one.
    await writePages(c, fs.vmid, 32, 32, 0x43); // 'C'
    expect(await heldForFailedDevices(c)).toBe(PAGES);
    // Pages 0..31 are discarded; past strategy.timeoutMs, new pages take the frames freed last first.
    await c.vmReleasep(fs.vmid, 0, 32);
    await sleep(2 * TIMEOUT_MS);
    const other = await c.vmsCreate(V_WORKING, 1024 * PAGE);
    await writePages(c, other, 0, 1024, 0x58); // 'X'

    // The stalled write ends and is answered late (its frames let go); then map-file rebinds, and the newer pages go out.
    await until(() => fs.stdout().includes('remounted'), 20_000, 'map-file mounted a new device');
    expect(await heldForFailedDevices(c), 'map-file rebinds only once its stalled write is over (answered late: its frames let go)').toBe(0);
    await c.vmWritep(fs.vmid, 0, PAGES);
    await c.vmsIowait(fs.vmid);
    const bytes = readFileSync(file);
    const pageHolds = (p: number) => String.fromCharCode(...new Set(bytes.subarray(p * PAGE, (p + 1) * PAGE)));
    const pages = Array.from({ length: PAGES }, (_, p) => pageHolds(p));
    expect(pages.slice(0, 32), "the discarded pages: the file's or the page-out's bytes, never another segment's").toEqual(Array(32).fill('B'));
    expect(pages.slice(32), 'the pages written again: the newer bytes').toEqual(Array(32).fill('C'));

    process.kill(tracee(fs), 'SIGINT'); // strace lets its tracee hear it
    expect(await fs.exited).toBe(0);
    await c.vmsDelete(other);
    await c.close();
  });

  it('frames held for a file system that never answers are let go once its process exits', async () => {
    const file = join(storeDir('pagerd-stalled-'), 'data.bin');
    writeFileSync(file, Buffer.alloc(PAGES * PAGE, 'A'));
    const fs = await stalledMapFile(daemon.socket, file, 600_000);
    const c = await daemon.client();
    await writePages(c, fs.vmid, 0, PAGES, 0x42);
    await c.vmWritep(fs.vmid, 0, PAGES);
    await expect(c.vmsIowait(fs.vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' });
    await sleep(2 * TIMEOUT_MS);
    expect(await heldForFailedDevices(c)).toBe(PAGES); // its process lives: it may still read them
    const node = Number(execFileSync('pgrep', ['-P', String(fs.proc.pid)]).toString().trim());
    // Killed, and strace (its tracer) with it: a traced process's threads finish exiting only once let go.
    process.kill(node, 'SIGKILL');
    fs.proc.kill('SIGKILL');
    await fs.exited;
    await until(async () => (await heldForFailedDevices(c)) === 0, 5000, 'the exit let the frames go');
    await c.vmsDelete(fs.vmid);
    await c.close();
  });
});

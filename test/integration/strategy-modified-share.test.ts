import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, openSync, readFileSync, rmSync, statfsSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_CLIENT, V_WORKING, type PagerClient, type StrategyRequest } from '../../src/client/index.js';
import { startDaemon } from '../support/daemon.js';
import { isRoot } from '../support/loop-device.js';
import { startMapFile } from '../support/map-file.js';
import { publicCopy } from '../support/public-copy.js';
import { storeDir } from '../support/store-files.js';

const PAGE = 4096;
const MOVE_PAGES = 64;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

/** `count` pages from `first`, each filled with a byte of its own (its number and a salt). */
function pages(first: number, count: number, salt: number): Uint8Array {
  const out = new Uint8Array(count * PAGE);
  for (let i = 0; i < count; i++) out.fill((first + i + salt) % 251 + 1, i * PAGE, (i + 1) * PAGE);
  return out;
}

function frameStats(c: PagerClient): Promise<{ census: { modified: number; pageOut: number }; clientPagesHeld: Record<string, number> }> {
  return c.stats() as never;
}

/** Writes the segment in moves of MOVE_PAGES pages up to `total`; answers the pages written and the error that stopped it, if any. */
async function writeUntilRefused(c: PagerClient, vmid: number, total: number, salt: number): Promise<{ written: number; error?: { code?: string; reason?: string } }> {
  for (let p = 0; p < total; p += MOVE_PAGES) {
    try {
      await c.vmMove(vmid, p * PAGE, MOVE_PAGES * PAGE, UIO_WRITE, uio(pages(p, MOVE_PAGES, salt)));
    } catch (err) {
      return { written: p, error: err as { code?: string; reason?: string } };
    }
  }
  return { written: total };
}

/**
 * A 4 MiB tmpfs (mode 0777) filled to the last block, holding a sparse 16 MiB file (4096 pages):
 * every page-out of it is ENOSPC until `filler` is removed. The caller unmounts `small`.
 */
function fullFileSystem(): { small: string; file: string; filler: string } {
  const small = storeDir('pagerd-full-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0777', 'tmpfs', small]);
  const file = join(small, 'data.bin');
  closeSync(openSync(file, 'w'));
  truncateSync(file, 4096 * PAGE);
  const filler = join(small, 'filler');
  const { bavail, bsize } = statfsSync(small);
  execFileSync('fallocate', ['-l', String(bavail * bsize), filler]);
  return { small, file, filler };
}

describe("a uid's client segments hold at most strategy.maxModifiedShare of the pool in pages their file systems have not written", () => {
  it('a slow file system: its writers are throttled by write-behind, never refused, and never hold more than the share', async () => {
    // 4096 frames, a share of 256: the writes (2048 pages) never press the pool, so only write-behind pages them out.
    const daemon = await startDaemon({ memory: '16MiB', env: { PAGERD_STRATEGY_MAX_MODIFIED_SHARE: '0.0625', PAGERD_MEMORY_ALLOC_TIMEOUT_MS: '5000' } });
    const written = new Map<number, Uint8Array>();
    // Slow writes (10 ms a request); reads at once (a move faults its pages in one by one).
    const slow = async (io: StrategyRequest): Promise<void> => {
      if (io.op === 'write') await new Promise((r) => setTimeout(r, 10));
      for (let i = 0; i < io.npages; i++) {
        if (io.op === 'write') written.set(io.page + i, Uint8Array.from(io.data.subarray(i * PAGE, (i + 1) * PAGE)));
        else io.data.subarray(i * PAGE, (i + 1) * PAGE).set(written.get(io.page + i) ?? new Uint8Array(PAGE));
      }
    };
    const fs = await daemon.client();
    const c = await daemon.client();
    const total = 2048;
    const vmid = await fs.vmsCreate(V_CLIENT, total * PAGE, { device: await fs.vmMounte(slow), mode: 0o666 });
    let most = 0;
    let writing = true;
    const sampling = (async () => {
      while (writing) {
        const { census } = await frameStats(c);
        most = Math.max(most, census.modified + census.pageOut);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const outcome = await writeUntilRefused(c, vmid, total, 0);
    writing = false;
    await sampling;
    expect(outcome).toEqual({ written: total });
    expect(most).toBeGreaterThan(128); // the sampler saw the writes pile up
    expect(most).toBeLessThanOrEqual(256);
    expect(written.size).toBeGreaterThanOrEqual(total - 256); // written behind before anyone asked
    await c.vmWritep(vmid, 0, total);
    await c.vmsIowait(vmid);
    expect((await frameStats(c)).clientPagesHeld).toEqual({});
    for (let p = 0; p < total; p++) if (written.get(p)?.[0] !== (p % 251) + 1) throw new Error(`page ${p} did not reach the file system`);
    const back = new Uint8Array(total * PAGE);
    await c.vmMove(vmid, 0, back.length, UIO_READ, uio(back));
    expect(Buffer.from(back).equals(Buffer.from(pages(0, total, 0)))).toBe(true);
    await c.vmsDelete(vmid);
    await c.close();
    await fs.close();
    expect(await daemon.stop()).toBe(0);
  }, 60_000);

  it('client file systems gone with modified pages hold at most strategy.maxModifiedTotalShare together: pagerd\'s own segments page on', async () => {
    // 4096 frames; no share per uid, a quarter (1024) for all client segments together.
    const daemon = await startDaemon({ memory: '16MiB', env: { PAGERD_STRATEGY_MAX_MODIFIED_SHARE: '1', PAGERD_STRATEGY_MAX_MODIFIED_TOTAL_SHARE: '0.25', PAGERD_MEMORY_ALLOC_TIMEOUT_MS: '500' } });
    const stranded: number[] = [];
    for (let i = 0; i < 5; i++) {
      // A file system that writes its segment, pages nothing out and goes: its pages stay, modified.
      const fs = await daemon.client();
      const vmid = await fs.vmsCreate(V_CLIENT, 1024 * PAGE, { device: await fs.vmMounte(async () => undefined) });
      const { error } = await writeUntilRefused(fs, vmid, 1024, i);
      if (error !== undefined) expect(error).toMatchObject({ code: 'ENOMEM', reason: 'modified-limit' });
      stranded.push(vmid);
      await fs.close();
    }
    const c = await daemon.client();
    const held = Object.values((await frameStats(c)).clientPagesHeld).reduce((a, b) => a + b, 0);
    expect(held).toBeGreaterThan(512);
    expect(held).toBeLessThanOrEqual(1024);
    const working = await c.vmsCreate(V_WORKING, 8192 * PAGE); // twice the pool
    expect(await writeUntilRefused(c, working, 8192, 9)).toEqual({ written: 8192 });
    const back = new Uint8Array(8192 * PAGE);
    await c.vmMove(working, 0, back.length, UIO_READ, uio(back));
    expect(Buffer.from(back).equals(Buffer.from(pages(0, 8192, 9)))).toBe(true);
    for (const vmid of stranded) await c.vmsDelete(vmid);
    expect((await frameStats(c)).clientPagesHeld).toEqual({});
    await c.close();
    expect(await daemon.stop()).toBe(0);
  }, 60_000);

  it('a map-file stopped (SIGSTOP) while its segment is written, then killed: it holds only the share, and the pool goes on paging for everyone else', async () => {
    // 2048 frames, a share of 512; the stopped file system is failed after 3 s.
    const daemon = await startDaemon({ memory: '8MiB', env: { PAGERD_STRATEGY_MAX_MODIFIED_SHARE: '0.25', PAGERD_MEMORY_ALLOC_TIMEOUT_MS: '1000', PAGERD_STRATEGY_TIMEOUT_MS: '3000' } });
    const file = join(storeDir('pagerd-stopped-'), 'data.bin');
    closeSync(openSync(file, 'w'));
    truncateSync(file, 4096 * PAGE);
    const { proc: mapFile, vmid } = await startMapFile(daemon.socket, file, ['--mode', '666']);
    mapFile.kill('SIGSTOP');

    // Another client fills the pool with modified pages of its own first: the stopped file
    // system's pages are then modified under pressure, and laundered towards it.
    const other = await daemon.client();
    const working = await other.vmsCreate(V_WORKING, 4096 * PAGE);
    const readsBack = async (salt: number): Promise<boolean> => {
      expect(await writeUntilRefused(other, working, 4096, salt)).toEqual({ written: 4096 });
      const back = new Uint8Array(4096 * PAGE);
      await other.vmMove(working, 0, back.length, UIO_READ, uio(back));
      return Buffer.from(back).equals(Buffer.from(pages(0, 4096, salt)));
    };
    expect(await readsBack(2)).toBe(true);
    const c = await daemon.client();
    const refused = await writeUntilRefused(c, vmid, 4096, 1);
    expect(refused.error).toMatchObject({ code: 'ENOMEM', reason: 'modified-limit' });
    expect(refused.written).toBeLessThanOrEqual(512);
    expect(await readsBack(3)).toBe(true); // while the file system is stopped, its pages held

    mapFile.kill('SIGKILL');
    await new Promise((resolve) => mapFile.once('exit', resolve));
    expect(await readsBack(4)).toBe(true); // its device gone, its pages stranded
    await expect(c.vmsIowait(vmid)).rejects.toMatchObject({ code: 'EIO' });
    await c.vmsDelete(vmid);
    expect((await frameStats(c)).clientPagesHeld).toEqual({});
    await Promise.all([c.close(), other.close()]);
    expect(await daemon.stop()).toBe(0);
  }, 60_000);

  it.runIf(isRoot)('a writer waiting at the share while its file system is full goes on once space returns: the failing pager is tried again within memory.allocTimeoutMs', async () => {
    // 2048 frames, a share of 512; a writer past it waits 1 s.
    const daemon = await startDaemon({ memory: '8MiB', env: { PAGERD_STRATEGY_MAX_MODIFIED_SHARE: '0.25', PAGERD_MEMORY_ALLOC_TIMEOUT_MS: '1000' } });
    const { small, file, filler } = fullFileSystem();
    try {
      const mapFile = await startMapFile(daemon.socket, file);
      const c = await daemon.client();
      const refused = await writeUntilRefused(c, mapFile.vmid, 4096, 1);
      expect(refused.error).toMatchObject({ code: 'ENOMEM', reason: 'modified-limit' });
      // Writers keep waiting while every page-out fails: the pager's back-off grows to its longest.
      for (let i = 0; i < 8; i++) await expect(writeUntilRefused(c, mapFile.vmid, refused.written + MOVE_PAGES, 1)).resolves.toMatchObject({ error: { reason: 'modified-limit' } });
      rmSync(filler);
      expect(await writeUntilRefused(c, mapFile.vmid, refused.written + 4 * MOVE_PAGES, 1)).toEqual({ written: refused.written + 4 * MOVE_PAGES });
      mapFile.proc.kill('SIGINT');
      expect(await mapFile.exited, mapFile.stderr()).toBe(0);
      expect(readFileSync(file).subarray(0, (refused.written + 4 * MOVE_PAGES) * PAGE).equals(Buffer.from(pages(0, refused.written + 4 * MOVE_PAGES, 1)))).toBe(true);
      await c.close();
      expect(await daemon.stop()).toBe(0);
    } finally {
      await daemon.stop();
      execFileSync('umount', ['-l', small]);
    }
  }, 60_000);

  it.runIf(isRoot)('map-file of another uid on a full file system: its segment holds only the share (ENOMEM modified-limit past it), other clients page on; interrupted it exits 74, and root adopts the segment once space returns', async () => {
    const PUBLIC = publicCopy(['@commander-js/extra-typings', 'commander', 'zod', 'cli-progress', 'fs-ext']);
    const stateDir = storeDir('pagerd-share-');
    chmodSync(stateDir, 0o755);
    const socket = join(stateDir, 'run', 'pagerd.sock');
    // 2048 frames, a share of 512; page-outs fail fast, so a refused writer waits 1 s.
    const daemon = await startDaemon({ stateDir, socket, memory: '8MiB', env: { PAGERD_STRATEGY_MAX_MODIFIED_SHARE: '0.25', PAGERD_MEMORY_ALLOC_TIMEOUT_MS: '1000' } });
    const { small, file, filler } = fullFileSystem();
    try {
      chownSync(file, 2000, 2000);
      const asAnotherUid = ['setpriv', '--reuid=2000', '--regid=0', '--clear-groups', process.execPath, join(PUBLIC, 'dist/src/cli/pagerctl.js')];
      const { proc: mapFile, vmid, stderr, exited } = await startMapFile(socket, file, ['--mode', '666'], asAnotherUid);

      const c = await daemon.client();
      expect((await c.segments()).find((seg) => seg.vmid === vmid)).toMatchObject({ uid: 2000, deviceLive: true });
      const refused = await writeUntilRefused(c, vmid, 4096, 1);
      expect(refused.error).toMatchObject({ code: 'ENOMEM', reason: 'modified-limit' });
      expect(refused.written).toBeLessThanOrEqual(512);
      expect((await frameStats(c)).clientPagesHeld).toEqual({ 2000: expect.any(Number) });
      expect((await frameStats(c)).clientPagesHeld[2000]).toBeLessThanOrEqual(512);

      // Another client's segment, twice the pool, pages through pagerd's store meanwhile.
      const other = await daemon.client();
      const working = await other.vmsCreate(V_WORKING, 4096 * PAGE);
      expect(await writeUntilRefused(other, working, 4096, 2)).toEqual({ written: 4096 });
      const back = new Uint8Array(4096 * PAGE);
      await other.vmMove(working, 0, back.length, UIO_READ, uio(back));
      expect(Buffer.from(back).equals(Buffer.from(pages(0, 4096, 2)))).toBe(true);
      await other.close();

      await c.vmWritep(vmid, 0, 4096);
      await expect(c.vmsIowait(vmid)).rejects.toMatchObject({ code: 'ENOSPC', reason: 'file-system-error' });
      // Interrupted on the full file system: it cannot write them, says how to later, and leaves them in pagerd.
      mapFile.kill('SIGINT');
      expect(await exited, stderr()).toBe(74);
      expect(stderr()).toContain(`--vmid ${vmid}`);
      // Space returns: root adopts the segment (another uid's), writes what it held, and its writers go on.
      rmSync(filler);
      const adopted = await startMapFile(socket, file, ['--vmid', String(vmid)]);
      const afterSpace = await writeUntilRefused(c, vmid, refused.written + 2 * MOVE_PAGES, 1);
      expect(afterSpace).toEqual({ written: refused.written + 2 * MOVE_PAGES });
      await c.close();
      adopted.proc.kill('SIGINT');
      expect(await adopted.exited, adopted.stderr()).toBe(0);
      const onDisk = readFileSync(file);
      expect(onDisk.subarray(0, (refused.written + 2 * MOVE_PAGES) * PAGE).equals(Buffer.from(pages(0, refused.written + 2 * MOVE_PAGES, 1)))).toBe(true);
      expect(await daemon.stop()).toBe(0);
    } finally {
      await daemon.stop();
      execFileSync('umount', ['-l', small]);
    }
  }, 120_000);
});

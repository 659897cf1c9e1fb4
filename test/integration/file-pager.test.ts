import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING, connect, serveFile, type PagerClient } from '../../src/client/index.js';
import { startDaemon } from '../support/daemon.js';
import { attachLoopDevice, isRoot } from '../support/loop-device.js';
import { runMapFile, startMapFile } from '../support/map-file.js';
import { publicCopy } from '../support/public-copy.js';
import { mulberry32 } from '../support/random.js';
import { storeDir } from '../support/store-files.js';

const PAGE = 4096;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

/** A page of the crash loop: its page number and version, repeated over the whole page (a torn page mixes two). */
function versioned(pno: number, version: number): Uint8Array {
  const out = new Uint8Array(PAGE);
  const view = new DataView(out.buffer);
  for (let i = 0; i < PAGE; i += 8) {
    view.setUint32(i, pno, true);
    view.setUint32(i + 4, version, true);
  }
  return out;
}

/** The version a page of the file holds, or throws if it is torn (two versions, or another page's). */
function versionIn(file: Buffer, pno: number): number {
  const view = new DataView(file.buffer, file.byteOffset + pno * PAGE, PAGE);
  const version = view.getUint32(4, true);
  if (version === 0 && view.getUint32(0, true) === 0) return 0; // never written
  for (let i = 0; i < PAGE; i += 8) {
    if (view.getUint32(i, true) !== pno || view.getUint32(i + 4, true) !== version) throw new Error(`page ${pno} is torn`);
  }
  return version;
}

/** Runs `pagerctl --json map-file path`, which must exit `status` with the error `code` and `reason` on stderr. */
async function expectRefused(socket: string, path: string, status: number, code: string, reason: string): Promise<void> {
  const run = await runMapFile(socket, ['--json', path]);
  expect(run.code, `${path}: ${run.stderr}`).toBe(status);
  expect(JSON.parse(run.stderr), path).toMatchObject({ error: { code, reason } });
}

/** The daemon serves no paging device and holds no segment (a refused map-file left nothing); then it stops cleanly. */
async function expectNothingLeftThenStop(daemon: Awaited<ReturnType<typeof startDaemon>>): Promise<void> {
  const c = await connect({ socket: daemon.socket });
  expect(await c.devices()).toEqual([]);
  expect(await c.segments()).toEqual([]);
  await c.close();
  expect(await daemon.stop()).toBe(0);
}

describe('pagerctl map-file: a regular file as a client segment (the reference client file system)', () => {
  it('serves the file\'s bytes, writes page-outs in place without growing it, and writes everything back when interrupted', async () => {
    const daemon = await startDaemon({ memory: '4MiB' });
    const dir = storeDir('pagerd-map-file-');
    const file = join(dir, 'data.bin');
    const original = Buffer.alloc(256 * 1024 + 100);
    for (let i = 0; i < original.length; i++) original[i] = (i * 31 + 7) & 0xff;
    writeFileSync(file, original);
    const ctl = await startMapFile(daemon.socket, file, ['--mode', '666']);
    const served = { vmid: ctl.vmid, ...(JSON.parse(ctl.stdout().split('\n')[0]) as { file: string; size: number }) };
    expect(served).toMatchObject({ file, size: original.length });

    const c = await daemon.client();
    const all = new Uint8Array(original.length);
    await c.vmMove(served.vmid, 0, all.length, UIO_READ, uio(all));
    expect(Buffer.from(all).equals(original)).toBe(true);
    const tail = new Uint8Array(PAGE); // the last page: 100 bytes of the file, zeros past its end
    await c.vmMove(served.vmid, 64 * PAGE, PAGE, UIO_READ, uio(tail));
    expect(Buffer.from(tail.subarray(0, 100)).equals(original.subarray(64 * PAGE))).toBe(true);
    expect(tail.subarray(100).every((b) => b === 0)).toBe(true);

    await c.vmMove(served.vmid, 3 * PAGE, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(0xaa)));
    await c.vmMove(served.vmid, 64 * PAGE, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(0xbb)));
    await c.vmWritep(served.vmid, 0, 65);
    await c.vmsIowait(served.vmid);
    const afterPageOut = readFileSync(file);
    expect(afterPageOut.length).toBe(original.length); // never grown past its size
    expect(afterPageOut.subarray(3 * PAGE, 4 * PAGE).every((b) => b === 0xaa)).toBe(true);
    expect(afterPageOut.subarray(64 * PAGE).every((b) => b === 0xbb)).toBe(true);

    await c.vmMove(served.vmid, 5 * PAGE, 10, UIO_WRITE, uio(new Uint8Array(10).fill(0xcc))); // modified, not paged out
    // Interrupted twice (a second Ctrl-C, or timeout(1) signalling the process group too): the
    // stop goes on. pagerd is stopped meanwhile, so the second signal comes during the stop.
    daemon.proc.kill('SIGSTOP');
    ctl.proc.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 300));
    ctl.proc.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 300));
    daemon.proc.kill('SIGCONT');
    expect(await ctl.exited, ctl.stderr()).toBe(0);
    expect(readFileSync(file).subarray(5 * PAGE, 5 * PAGE + 10).every((b) => b === 0xcc)).toBe(true);
    expect(await c.devices()).toEqual([]);
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it('crash loop: kill -9 of pagerd under 4 writers, three times; the file holds every page acknowledged by vms_iowait, none torn', async () => {
    const dir = storeDir('pagerd-file-crash-');
    const file = join(dir, 'data.bin');
    const PAGES = 512;
    writeFileSync(file, Buffer.alloc(PAGES * PAGE));
    const acked = new Array<number>(PAGES).fill(0);
    let version = 0;
    const random = mulberry32(1201);
    for (let round = 0; round < 3; round++) {
      const daemon = await startDaemon({ memory: '1MiB', stateDir: storeDir('pagerd-file-crash-state-') });
      const pagerClient = await daemon.client();
      const pager = await serveFile(pagerClient, file, { mode: 0o666 });
      const writers = await Promise.all(Array.from({ length: 4 }, () => daemon.client()));
      let running = true;
      // Each writer owns the pages p ≡ w (mod 4) and writes 8 distinct ones at a time, so a page's
      // writes are ordered: two writes of one page in flight at once could land either way round.
      const writer = async (c: PagerClient, w: number): Promise<void> => {
        try {
          while (running) {
            const pages = new Set<number>();
            while (pages.size < 8) pages.add(w + 4 * Math.floor(random() * (PAGES / 4)));
            const versions = [...pages].map((p) => ({ p, v: ++version }));
            await Promise.all(versions.map(({ p, v }) => c.vmMove(pager.vmid, p * PAGE, PAGE, UIO_WRITE, uio(versioned(p, v)))));
            await c.vmWritep(pager.vmid, 0, PAGES);
            await c.vmsIowait(pager.vmid);
            // Acknowledged: durable in the file. A later version of the page may be there too (written, not yet acknowledged).
            for (const { p, v } of versions) acked[p] = v;
          }
        } catch {
          // the daemon was killed under it
        }
      };
      const load = Promise.all(writers.map((c, w) => writer(c, w)));
      await new Promise((r) => setTimeout(r, 400 + Math.floor(random() * 600)));
      await daemon.kill();
      running = false;
      await load;
      // The file system outlives pagerd: its writes under way finish (a read of the file racing
      // one could see a page half written, which the file will not hold).
      await pagerClient.closed();
      await pager.idle();
      const image = readFileSync(file);
      expect(image.length).toBe(PAGES * PAGE);
      for (let p = 0; p < PAGES; p++) expect(versionIn(image, p), `page ${p}`).toBeGreaterThanOrEqual(acked[p]);
    }
    expect(acked.filter((v) => v > 0).length).toBeGreaterThan(100);
    expect(statSync(file).size).toBe(PAGES * PAGE);
  }, 120_000);

  it('a second map-file of a file already served exits 75 and mounts nothing; the file is free again once its server stops', async () => {
    const daemon = await startDaemon();
    const file = join(storeDir('pagerd-twice-'), 'data.bin');
    writeFileSync(file, Buffer.alloc(4 * PAGE));
    const c = await connect({ socket: daemon.socket });
    const first = await serveFile(c, file);
    // It serves until interrupted when it could take the file.
    const second = () => runMapFile(daemon.socket, [file], 3000);
    const refused = await second();
    expect(refused.code, refused.stderr).toBe(75);
    expect(refused.stderr).toMatch(/^pagerctl: .*served already/);
    expect((await c.devices()).map((d) => d.id)).toEqual([first.device]);
    await first.stop();
    expect((await second()).code).toBe(0); // it took the file, then was interrupted
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it('map-file --vmid adopts the segment of a map-file killed with modified pages: they reach the file; a plain map-file of the file exits 75 meanwhile, a segment not the file\'s exits 65', async () => {
    const daemon = await startDaemon({ memory: '4MiB' });
    const dir = storeDir('pagerd-adopt-');
    const file = join(dir, 'data.bin');
    writeFileSync(file, Buffer.alloc(16 * PAGE));
    const first = await startMapFile(daemon.socket, file, ['--mode', '666']);
    const c = await daemon.client();
    await c.vmMove(first.vmid, 2 * PAGE, 2 * PAGE, UIO_WRITE, uio(new Uint8Array(2 * PAGE).fill(0x5a))); // modified, in the pool only
    first.proc.kill('SIGKILL');
    await first.exited;
    await expect(c.vmsIowait(first.vmid)).resolves.toBeUndefined(); // nothing was paged out yet
    expect(readFileSync(file).subarray(2 * PAGE, 4 * PAGE).every((b) => b === 0)).toBe(true);

    // The file records its segment: a new one of it would be a second cache, the old one's pages written over newer ones later.
    const plain = await runMapFile(daemon.socket, [file]);
    expect(plain.code, plain.stderr).toBe(75);
    expect(plain.stderr).toMatch(new RegExp(`still cached by segment ${first.vmid}.*--vmid ${first.vmid}`));
    const copy = join(dir, 'copy.bin');
    execFileSync('cp', ['-a', file, copy]); // carries the attribute, not the file's identity
    expect((await runMapFile(daemon.socket, [copy], 1000)).code, 'a copy of the file is served').toBe(0);
    const strandedOfAnother = join(dir, 'another.bin');
    writeFileSync(strandedOfAnother, Buffer.alloc(16 * PAGE));
    const another = await startMapFile(daemon.socket, strandedOfAnother);
    another.proc.kill('SIGKILL');
    await another.exited;

    const refusals: { args: string[]; why: RegExp }[] = [
      { args: ['--vmid', String(another.vmid)], why: new RegExp(`is cached by segment ${first.vmid}, not ${another.vmid}`) },
      { args: ['--vmid', String(await c.vmsCreate(V_WORKING, 16 * PAGE))], why: /not a client segment paged by a strategy routine/ },
      { args: ['--vmid', '999999'], why: /no such segment/ },
    ];
    const other = join(dir, 'other.bin');
    writeFileSync(other, Buffer.alloc(8 * PAGE));
    refusals.push({ args: ['--vmid', String(first.vmid)], why: /its extent is 65536 bytes, the file's is 32768/ });
    for (const { args, why } of refusals) {
      const refused = await runMapFile(daemon.socket, [why.source.includes('extent') ? other : file, ...args]);
      expect(refused.code, refused.stderr).toBe(65);
      expect(refused.stderr).toMatch(why);
    }

    const second = await startMapFile(daemon.socket, file, ['--vmid', String(first.vmid)]);
    expect(second.vmid).toBe(first.vmid);
    for (const deadline = Date.now() + 5000; readFileSync(file)[2 * PAGE] !== 0x5a && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    expect(readFileSync(file).subarray(2 * PAGE, 4 * PAGE).every((b) => b === 0x5a)).toBe(true); // written once adopted
    await c.vmMove(first.vmid, 9 * PAGE, 10, UIO_WRITE, uio(new Uint8Array(10).fill(0x6b)));
    second.proc.kill('SIGINT');
    expect(await second.exited, second.stderr()).toBe(0);
    expect(readFileSync(file).subarray(9 * PAGE, 9 * PAGE + 10).every((b) => b === 0x6b)).toBe(true);
    await c.vmsDelete(another.vmid);
    expect(await c.devices()).toEqual([]);
    expect((await runMapFile(daemon.socket, [file], 1000)).code, 'a file whose segment was deleted at stop is served anew').toBe(0);
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it.runIf(isRoot)("the file's segment record across uids and file systems: another uid that cannot see the segment is refused; its owner, once it deleted its own, serves the file anew; a file system without extended attributes is served, and map-file says the segment went unrecorded", async () => {
    const PUBLIC = publicCopy(['@commander-js/extra-typings', 'commander', 'zod', 'cli-progress', 'fs-ext']);
    const stateDir = storeDir('pagerd-record-');
    chmodSync(stateDir, 0o755);
    const socket = join(stateDir, 'run', 'pagerd.sock');
    const daemon = await startDaemon({ stateDir, socket });
    const dir = storeDir('pagerd-record-files-');
    chmodSync(dir, 0o777);
    const file = join(dir, 'data.bin');
    writeFileSync(file, Buffer.alloc(16 * PAGE));
    chmodSync(file, 0o666);
    const asUid2000 = ['setpriv', '--reuid=2000', '--regid=0', '--clear-groups', process.execPath, join(PUBLIC, 'dist/src/cli/pagerctl.js')];
    const c = await daemon.client();

    const roots = await startMapFile(socket, file); // its segment mode 600: uid 2000 cannot see it
    await c.vmMove(roots.vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(0x11)));
    roots.proc.kill('SIGKILL');
    await roots.exited;
    const refused = await runMapFile(socket, [file], 10_000, asUid2000);
    expect(refused.code, refused.stderr).toBe(75);
    expect(refused.stderr).toMatch(new RegExp(`records segment ${roots.vmid}, which this uid cannot see`));
    await c.vmsDelete(roots.vmid);
    expect((await runMapFile(socket, [file], 10_000, asUid2000)).code, 'deleted or not seen, it cannot tell').toBe(75);
    execFileSync('python3', ['-c', 'import os, sys; os.removexattr(sys.argv[1], "user.pagerd.segment")', file]); // as the message says

    const own = await startMapFile(socket, file, [], asUid2000);
    own.proc.kill('SIGKILL');
    await own.exited;
    expect((await runMapFile(socket, [file], 10_000, asUid2000)).code, 'its own segment is still there').toBe(75);
    await c.vmsDelete(own.vmid);
    expect((await runMapFile(socket, [file], 1000, asUid2000)).code, 'its own segment deleted: the record is stale').toBe(0);

    const ram = storeDir('pagerd-ramfs-');
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', ram]);
    try {
      writeFileSync(join(ram, 'data.bin'), Buffer.alloc(4 * PAGE));
      const unrecorded = await startMapFile(socket, join(ram, 'data.bin'));
      for (const deadline = Date.now() + 5000; !unrecorded.stdout().includes('notRecorded') && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
      expect(JSON.parse(unrecorded.stdout().trim().split('\n')[1])).toEqual({ notRecorded: { message: 'its file system keeps no extended attributes' } });
      unrecorded.proc.kill('SIGINT');
      expect(await unrecorded.exited).toBe(0);
    } finally {
      execFileSync('umount', ['-l', ram]);
    }
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it.runIf(isRoot)("the file's record holds when its file system is mounted again on another device number: a plain map-file of it still exits 75", async () => {
    const daemon = await startDaemon();
    const dir = storeDir('pagerd-remounted-');
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    const image = attachLoopDevice(32 * 1024 * 1024, dir);
    execFileSync('mkfs.ext4', ['-q', '-F', image.path]);
    execFileSync('mount', [image.path, mnt]);
    const file = join(mnt, 'data.bin');
    writeFileSync(file, Buffer.alloc(16 * PAGE));
    const before = statSync(file).dev;
    const first = await startMapFile(daemon.socket, file);
    first.proc.kill('SIGKILL');
    await first.exited;
    execFileSync('umount', [mnt]);
    image.detach();
    const other = attachLoopDevice(1024 * 1024); // takes the number the image had
    const again = execFileSync('losetup', ['-f', '--show', join(dir, 'image')], { encoding: 'utf8' }).trim();
    execFileSync('mount', [again, mnt]);
    try {
      expect(statSync(file).dev).not.toBe(before);
      const refused = await runMapFile(daemon.socket, [file]);
      expect(refused.code, refused.stderr).toBe(75);
      expect(refused.stderr).toMatch(new RegExp(`still cached by segment ${first.vmid}`));
    } finally {
      execFileSync('umount', [mnt]);
      execFileSync('losetup', ['-d', again]);
      other.detach();
    }
    const c = await daemon.client();
    await c.vmsDelete(first.vmid);
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it('map-file --vmid of a segment a live map-file serves exits 75 and takes nothing; a map-file whose segment is rebound by another program exits 69', async () => {
    const daemon = await startDaemon({ memory: '4MiB' });
    const file = join(storeDir('pagerd-taken-'), 'data.bin');
    writeFileSync(file, Buffer.alloc(16 * PAGE));
    const serving = await startMapFile(daemon.socket, file);
    const other = join(storeDir('pagerd-taken-'), 'other.bin');
    writeFileSync(other, Buffer.alloc(16 * PAGE));
    const second = await runMapFile(daemon.socket, [other, '--vmid', String(serving.vmid)]);
    expect(second.code, second.stderr).toBe(75);
    expect(second.stderr).toMatch(/is served by live paging device/);
    const c = await daemon.client();
    const [device] = await c.devices();
    expect(device.segments).toEqual([serving.vmid]); // still the first one's

    await c.vmSetdevid(serving.vmid, await c.vmMounte(async () => undefined)); // another program takes it
    expect(await serving.exited, serving.stderr()).toBe(69);
    expect(serving.stderr()).toMatch(/"reason":"segment-taken"/);
    await c.vmsDelete(serving.vmid);
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it('a map-file stopped past strategy.timeoutMs and continued mounts a new device, rebinds its segment and serves again', async () => {
    const daemon = await startDaemon({ memory: '4MiB', env: { PAGERD_STRATEGY_TIMEOUT_MS: '1000' } });
    const file = join(storeDir('pagerd-remount-'), 'data.bin');
    const original = Buffer.alloc(16 * PAGE);
    for (let i = 0; i < original.length; i++) original[i] = (i * 7) & 0xff;
    writeFileSync(file, original);
    const pager = await startMapFile(daemon.socket, file, ['--mode', '666']);
    const c = await daemon.client();
    const read = (pno: number): Promise<Buffer> => {
      const into = new Uint8Array(PAGE);
      return c.vmMove(pager.vmid, pno * PAGE, PAGE, UIO_READ, uio(into)).then(() => Buffer.from(into));
    };
    expect((await read(0)).equals(original.subarray(0, PAGE))).toBe(true);
    pager.proc.kill('SIGSTOP');
    await expect(read(1)).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' });
    const [failed] = await c.devices();
    expect(failed.alive).toBe(false);
    pager.proc.kill('SIGCONT');
    for (const deadline = Date.now() + 5000; !(await c.devices()).some((d) => d.alive) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    const [serving] = await c.devices();
    expect(serving).toMatchObject({ alive: true, segments: [pager.vmid] });
    expect(serving.id).not.toBe(failed.id);
    expect((await read(1)).equals(original.subarray(PAGE, 2 * PAGE))).toBe(true);
    await c.vmMove(pager.vmid, 3 * PAGE, 4, UIO_WRITE, uio(new Uint8Array(4).fill(0xee)));
    pager.proc.kill('SIGINT');
    expect(await pager.exited, pager.stderr()).toBe(0);
    expect(pager.stdout().trim().split('\n').slice(1).map((line) => JSON.parse(line))).toEqual([{ remounted: { failed: failed.id, device: serving.id } }]);
    expect(readFileSync(file).subarray(3 * PAGE, 3 * PAGE + 4).every((b) => b === 0xee)).toBe(true);
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it('a map-file continued after another adopted its segment leaves it alone and exits 69; the adopter writes to its own file', async () => {
    const daemon = await startDaemon({ memory: '4MiB', env: { PAGERD_STRATEGY_TIMEOUT_MS: '1000' } });
    const dir = storeDir('pagerd-continued-');
    const [fileA, fileB] = [join(dir, 'a.bin'), join(dir, 'b.bin')];
    writeFileSync(fileA, Buffer.alloc(16 * PAGE));
    writeFileSync(fileB, Buffer.alloc(16 * PAGE));
    const a = await startMapFile(daemon.socket, fileA);
    const c = await daemon.client();
    a.proc.kill('SIGSTOP');
    await expect(c.vmMove(a.vmid, 0, PAGE, UIO_READ, uio(new Uint8Array(PAGE)))).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' });
    const b = await startMapFile(daemon.socket, fileB, ['--vmid', String(a.vmid)]);
    a.proc.kill('SIGCONT');
    expect(await a.exited, a.stderr()).toBe(69);
    expect(a.stderr()).toMatch(/"reason":"segment-taken"/);
    await c.vmMove(a.vmid, PAGE, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(0x33)));
    b.proc.kill('SIGINT');
    expect(await b.exited, b.stderr()).toBe(0);
    expect(readFileSync(fileB).subarray(PAGE, 2 * PAGE).every((x) => x === 0x33)).toBe(true);
    expect(readFileSync(fileA).every((x) => x === 0)).toBe(true);
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it('pagerctl map-file of a file that does not exist exits 66', async () => {
    const daemon = await startDaemon();
    const run = await runMapFile(daemon.socket, [join(storeDir('pagerd-nofile-'), 'missing')]);
    expect(run.code).toBe(66);
    expect(run.stderr).toMatch(/^pagerctl: ENOENT/);
    await expectNothingLeftThenStop(daemon);
  });

  it.runIf(isRoot)('pagerctl map-file of a file it may not write (on a read-only mount, immutable) exits 77 and mounts nothing', async () => {
    const daemon = await startDaemon();
    const dir = storeDir('pagerd-notwritable-');
    const file = join(dir, 'data.bin');
    writeFileSync(file, Buffer.alloc(4 * PAGE));
    const readOnly = storeDir('pagerd-ro-');
    execFileSync('mount', ['--bind', '-o', 'ro', dir, readOnly]);
    try {
      await expectRefused(daemon.socket, join(readOnly, 'data.bin'), 77, 'EX_NOPERM', 'file-not-writable');
    } finally {
      execFileSync('umount', ['-l', readOnly]);
    }
    execFileSync('chattr', ['+i', file]);
    try {
      await expectRefused(daemon.socket, file, 77, 'EX_NOPERM', 'file-not-writable');
    } finally {
      execFileSync('chattr', ['-i', file]);
    }
    await expectNothingLeftThenStop(daemon);
  });

  it('pagerctl map-file of something other than a regular file (/dev/null, a directory) exits 66 and mounts nothing', async () => {
    const daemon = await startDaemon();
    for (const path of ['/dev/null', storeDir('pagerd-dir-')]) await expectRefused(daemon.socket, path, 66, 'EX_NOINPUT', 'not-a-regular-file');
    await expectNothingLeftThenStop(daemon);
  });
});

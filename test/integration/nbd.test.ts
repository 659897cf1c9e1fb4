import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING, serveFile, type PagerClient } from '../../src/client/index.js';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';
import { isRoot } from '../support/loop-device.js';
import { RawNbd, requestBytes as request, u32 } from '../support/nbd-raw.js';
import { rssBytes } from '../support/rss.js';
import { mulberry32 } from '../support/random.js';
import { storeDir } from '../support/store-files.js';
import { startMapFile } from '../support/map-file.js';

const run = promisify(execFile);
const MiB = 1 << 20;

/** The real NBD clients these tests use (.ci/run installs them). */
const TOOLS = ['qemu-img', 'qemu-io', 'nbdinfo', 'nbdcopy', 'nbdfuse', 'fio', 'mkfs.ext4', 'fsck.ext4', 'losetup'];
const missing = TOOLS.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const haveTools = missing.length === 0;
const canMountFuse = isRoot && existsSync('/dev/fuse') && existsSync('/dev/loop-control');

async function nbdDaemon(options: { stateDir?: string; memory?: string } = {}): Promise<RunningDaemon & { nbd: string; uri: (vmid: number) => string }> {
  const stateDir = options.stateDir ?? storeDir('pagerd-nbd-');
  const nbd = join(stateDir, 'nbd.sock');
  const daemon = await startDaemon({ stateDir, memory: options.memory ?? '16MiB', args: ['--nbd-socket', nbd], env: { PAGERD_STORE_CREATE_BYTES: '256MiB' } });
  return Object.assign(daemon, { nbd, uri: (vmid: number) => `nbd+unix:///${vmid}?socket=${nbd}` });
}

/** A 1 MiB segment whose first page is resident and holds 9s. */
async function nineSegment(c: PagerClient): Promise<number> {
  const vmid = await c.vmsCreate(V_WORKING, MiB);
  await c.vmMove(vmid, 0, 4096, UIO_WRITE, { iov: [new Uint8Array(4096).fill(9)], offset: 0, resid: 4096, segflg: 0 });
  return vmid;
}

/**
 * `pagerctl map-file` of a new 1 MiB file (0x11 bytes) in its own process, so a test can stop
 * and kill the file system: the segment, its device, and the device's requests not yet answered.
 */
async function mapFileProcess(daemon: RunningDaemon, c: PagerClient): Promise<{ ctl: ChildProcess; vmid: number; unanswered(): Promise<number> }> {
  const file = join(daemon.stateDir, 'served.bin');
  writeFileSync(file, Buffer.alloc(MiB, 0x11));
  const served = await startMapFile(daemon.socket, file);
  const { vmid, device } = JSON.parse(served.stdout().split('\n')[0]) as { vmid: number; device: number };
  const ctl = served.proc;
  const unanswered = async (): Promise<number> => (await c.devices()).filter((d) => d.id === device).reduce((n, d) => n + d.inFlight + d.queued, 0);
  return { ctl, vmid, unanswered };
}

function randomBytes(seed: number, n: number): Buffer {
  const random = mulberry32(seed);
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) out.writeUInt32LE(Math.floor(random() * 2 ** 32) >>> 0, i);
  return out;
}

describe('segments as NBD exports, used by real clients', () => {
  it('the NBD clients are installed (.ci/run installs them)', () => {
    expect(missing).toEqual([]);
  });

  it.runIf(haveTools)('qemu-img convert into an export, compare; nbdcopy out and back; nbdinfo sizes and lists only what the peer may use', async () => {
    const daemon = await nbdDaemon();
    try {
      const c = await daemon.client();
      const vmid = await c.vmsCreate(V_WORKING, 24 * MiB);
      const dir = storeDir('pagerd-nbd-img-');
      const image = join(dir, 'source.img');
      // Data, then zeros: qemu-img writes the zeros as WRITE_ZEROES, which must read back as zeros.
      writeFileSync(image, Buffer.concat([randomBytes(1, 8 * MiB), Buffer.alloc(12 * MiB), randomBytes(2, 4 * MiB)]));
      await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', image, daemon.uri(vmid)]);
      const compared = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', image, daemon.uri(vmid)]);
      expect(compared.stdout).toContain('Images are identical');

      const copy = join(dir, 'copy.img');
      await run('nbdcopy', [daemon.uri(vmid), copy]);
      expect(readFileSync(copy).equals(readFileSync(image))).toBe(true);
      // And back into a second segment.
      const second = await c.vmsCreate(V_WORKING, 24 * MiB);
      await run('nbdcopy', [copy, daemon.uri(second)]);
      expect((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', image, daemon.uri(second)])).stdout).toContain('Images are identical');

      const info = JSON.parse((await run('nbdinfo', ['--json', daemon.uri(vmid)])).stdout) as { exports: { 'export-size': number; can_flush: boolean; is_read_only: boolean }[] };
      expect(info.exports[0]).toMatchObject({ 'export-size': 24 * MiB, can_flush: true, is_read_only: false });
      const list = (await run('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${daemon.nbd}`])).stdout;
      expect((JSON.parse(list) as { exports: { 'export-name': string }[] }).exports.map((e) => e['export-name']).sort()).toEqual([String(vmid), String(second)].sort());
      // The bytes are the segment's: the native client reads what qemu-img wrote.
      const back = new Uint8Array(4096);
      await c.vmMove(vmid, 20 * MiB, 4096, UIO_READ, { iov: [back], offset: 0, resid: 4096, segflg: 0 });
      expect(Buffer.from(back).equals(readFileSync(image).subarray(20 * MiB, 20 * MiB + 4096))).toBe(true);
      await c.close();
    } finally {
      await daemon.stop();
    }
  }, 120_000);

  it.runIf(haveTools)('qemu-io patterned writes read back; a discard shows as a hole in nbdinfo --map; write zeroes reads zeros; all across kill -9', async () => {
    const daemon = await nbdDaemon();
    let vmid = 0;
    try {
      const c = await daemon.client();
      vmid = await c.vmsCreate(V_WORKING, 8 * MiB);
      await c.close();
      const io = (...commands: string[]) => run('qemu-io', ['-f', 'raw', ...commands.flatMap((cmd) => ['-c', cmd]), daemon.uri(vmid)]);
      await io('write -P 0xa1 0 4M', 'write -P 0xb2 4M 4M', 'write -P 0xc3 -f 100k 5000', 'flush');
      await io('read -P 0xa1 0 100k', 'read -P 0xc3 100k 5000', 'read -P 0xb2 4M 4M');
      await io('discard 1M 2M', 'write -z 6M 8k', 'flush');
      await expect(io('read -P 0 1M 2M', 'read -P 0 6M 8k', 'read -P 0xb2 6152k 1M')).resolves.toBeDefined();
      const map = (await run('nbdinfo', ['--map', '--json', daemon.uri(vmid)])).stdout;
      const extents = JSON.parse(map) as { offset: number; length: number; type: number }[];
      const at = (offset: number) => extents.find((e) => e.offset <= offset && offset < e.offset + e.length)!;
      expect(at(1 * MiB).type & 1).toBe(1); // a hole where the discard was
      expect(at(0).type & 1).toBe(0); // data before it
    } finally {
      await daemon.kill();
    }
    const again = await nbdDaemon({ stateDir: daemon.stateDir });
    try {
      await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xa1 0 100k', '-c', 'read -P 0xc3 100k 5000', '-c', 'read -P 0 1M 2M', '-c', 'read -P 0 6M 8k', '-c', 'read -P 0xb2 6152k 1M', again.uri(vmid)]);
    } finally {
      await again.stop();
    }
  }, 120_000);

  it.runIf(haveTools)('fio nbd engine: random writes at 16 in flight verified with crc32c', async () => {
    const daemon = await nbdDaemon();
    try {
      const c = await daemon.client();
      const vmid = await c.vmsCreate(V_WORKING, 32 * MiB);
      await c.close();
      const { stdout } = await run('fio', ['--name=verify', '--ioengine=nbd', `--uri=${daemon.uri(vmid)}`, '--rw=randwrite', '--bs=4k', '--size=16M', '--iodepth=16', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', '--output-format=json']);
      const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] }).jobs[0];
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBe(16 * MiB);
      expect(job.read.io_bytes).toBe(16 * MiB); // every block read back and verified
    } finally {
      await daemon.stop();
    }
  }, 120_000);

  it.runIf(haveTools && canMountFuse)('nbdfuse + a loop device + ext4: files written, sync, kill -9 of pagerd, restart: fsck clean and every file intact', async () => {
    const daemon = await nbdDaemon({ memory: '32MiB' });
    const c = await daemon.client().catch(async (err: unknown) => {
      await daemon.kill();
      throw err;
    });
    const vmid = await c.vmsCreate(V_WORKING, 64 * MiB);
    await c.close();
    const dir = storeDir('pagerd-nbd-fs-');
    const fuse = join(dir, 'fuse');
    const mnt = join(dir, 'mnt');
    mkdirSync(fuse);
    mkdirSync(mnt);
    const files = [1, 2, 3, 4].map((i) => ({ name: join(mnt, `f${i}`), bytes: randomBytes(10 + i, (i * 700 + 13) * 1024) }));
    const attach = async (uri: string): Promise<{ loop: string; detach: () => Promise<void> }> => {
      const fuseProc = spawn('nbdfuse', [fuse, uri], { stdio: 'ignore' });
      for (let i = 0; i < 100 && !existsSync(join(fuse, 'nbd')); i++) await new Promise((r) => setTimeout(r, 50));
      const loop = (await run('losetup', ['-f', '--show', join(fuse, 'nbd')])).stdout.trim();
      return {
        loop,
        detach: async () => {
          spawnSync('umount', ['-l', mnt]);
          spawnSync('losetup', ['-d', loop]);
          spawnSync('fusermount3', ['-u', fuse]);
          fuseProc.kill();
        },
      };
    };
    const first = await attach(daemon.uri(vmid));
    try {
      await run('mkfs.ext4', ['-q', '-F', first.loop]);
      await run('mount', [first.loop, mnt]);
      for (const f of files) writeFileSync(f.name, f.bytes);
      await run('sync', ['-f', files[0].name]);
    } finally {
      await daemon.kill(); // with the file system still mounted
      await first.detach();
    }
    const again = await nbdDaemon({ stateDir: daemon.stateDir, memory: '32MiB' });
    const second = await attach(again.uri(vmid));
    try {
      // Mounting replays the journal the kill left (what a reboot does), then the check reads it all.
      await run('mount', [second.loop, mnt]);
      for (const f of files) expect(readFileSync(f.name).equals(f.bytes), f.name).toBe(true);
      await run('umount', [mnt]);
      const fsck = spawnSync('fsck.ext4', ['-n', '-f', second.loop], { encoding: 'utf8' });
      expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
    } finally {
      await second.detach();
      await again.stop();
    }
  }, 180_000);
});

describe('NBD exports of segments a client file system pages', () => {
  it.runIf(haveTools)('read the file\'s bytes (structured replies, no page resident), show them as data in nbdinfo --map, and write zeroes as zeros in the file', async () => {
    const daemon = await nbdDaemon();
    const file = join(daemon.stateDir, 'served.bin');
    const original = randomBytes(71, 2 * MiB);
    writeFileSync(file, original);
    const pagerClient = await daemon.client();
    const pager = await serveFile(pagerClient, file, { mode: 0o600 });
    try {
      const uri = daemon.uri(pager.vmid);
      // Nothing resident, nothing in pagerd's store: every byte is the file system's.
      await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', file, uri]);
      const extents = JSON.parse((await run('nbdinfo', ['--map', '--json', uri])).stdout) as { offset: number; length: number; type: number }[];
      expect(extents.reduce((n, e) => n + e.length, 0)).toBe(2 * MiB);
      expect(extents.every((e) => (e.type & 1) === 0)).toBe(true);
      // WRITE_ZEROES without NO_HOLE (qemu-io -d unmap, write -z -u): whole pages released would
      // read the file's old bytes back.
      await run('qemu-io', ['-f', 'raw', '-d', 'unmap', '-c', 'write -P 0x55 0 64k', '-c', 'write -z -u 0 64k', '-c', 'write -z -u 100k 200k', '-c', 'flush', uri]);
      await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0 0 64k', '-c', 'read -P 0 100k 200k', uri]);
      const after = readFileSync(file);
      expect(after.subarray(0, 64 * 1024).every((b) => b === 0)).toBe(true);
      expect(after.subarray(100 * 1024, 300 * 1024).every((b) => b === 0)).toBe(true);
      expect(after.subarray(64 * 1024, 100 * 1024).equals(original.subarray(64 * 1024, 100 * 1024))).toBe(true);
    } finally {
      await pager.stop();
      await pagerClient.close();
      await daemon.stop();
    }
  }, 60_000);

  it('a FUA write and flushes on two connections, all waiting on page-outs the file system never completes, each answer EIO', async () => {
    const daemon = await nbdDaemon();
    const c = await daemon.client();
    const { ctl, vmid, unanswered } = await mapFileProcess(daemon, c);
    const connections: RawNbd[] = [];
    try {
      const [a, b] = await Promise.all([RawNbd.open(daemon.nbd, String(vmid)), RawNbd.open(daemon.nbd, String(vmid))]);
      connections.push(a, b);
      a.request(1, 1, 0, 64 * 1024, Buffer.alloc(64 * 1024, 0x22));
      expect((await a.simpleReply())?.error).toBe(0);
      ctl.kill('SIGSTOP'); // the file system stops answering
      a.request(3, 2, 0, 0); // FLUSH: the 16 pages go to the stopped file system in one request
      b.request(3, 4, 0, 0); // B's FLUSH shares that page-out
      a.request(1, 3, 128 * 1024, 4096, Buffer.alloc(4096, 0x33), 1); // WRITE with FUA: a request of its own
      // Both page-out requests are with the stopped file system before it dies.
      while ((await unanswered()) < 2) await new Promise((r) => setTimeout(r, 20));
      ctl.kill('SIGKILL'); // the device is gone: both page-outs fail
      const fromA = [await a.simpleReply(), await a.simpleReply()];
      expect(fromA.map((r) => [r?.cookie, r?.error]).sort()).toEqual([
        [2, 5],
        [3, 5],
      ]);
      expect(await b.simpleReply()).toMatchObject({ cookie: 4, error: 5 });
    } finally {
      for (const r of connections) r.close();
      ctl.kill('SIGKILL');
      await c.close();
      await daemon.stop();
    }
  }, 60_000);

  it('a flush shared by two connections completes for the one that stays when the one whose request made it goes', async () => {
    const daemon = await nbdDaemon();
    const c = await daemon.client();
    const { ctl, vmid, unanswered } = await mapFileProcess(daemon, c);
    const file = join(daemon.stateDir, 'served.bin');
    const connections: RawNbd[] = [];
    try {
      const [first, a, b] = await Promise.all([0, 1, 2].map(() => RawNbd.open(daemon.nbd, String(vmid))));
      connections.push(first, a, b);
      const write = async (r: RawNbd, page: number, fill: number): Promise<void> => {
        r.request(1, 1, page * 4096, 4096, Buffer.alloc(4096, fill));
        expect((await r.simpleReply())?.error).toBe(0);
      };
      await write(first, 0, 0x22);
      ctl.kill('SIGSTOP');
      first.request(3, 2, 0, 0); // a flush cycle now runs, its page-out with the stopped file system
      while ((await unanswered()) < 1) await new Promise((r) => setTimeout(r, 20));
      await write(a, 2, 0x33);
      a.request(3, 3, 0, 0); // the next cycle, made by A's request
      await new Promise((r) => setTimeout(r, 100));
      await write(b, 4, 0x44);
      b.request(3, 4, 0, 0); // B's flush shares that next cycle
      await new Promise((r) => setTimeout(r, 100));
      a.close(); // A goes before the cycle its request made has begun
      await new Promise((r) => setTimeout(r, 100));
      ctl.kill('SIGCONT');
      expect(await first.simpleReply()).toMatchObject({ cookie: 2, error: 0 });
      expect(await b.simpleReply()).toMatchObject({ cookie: 4, error: 0 });
      const image = readFileSync(file);
      for (const [page, fill] of [[0, 0x22], [2, 0x33], [4, 0x44]]) expect(image.subarray(page * 4096, (page + 1) * 4096).every((x) => x === fill), `page ${page}`).toBe(true);
    } finally {
      for (const r of connections) r.close();
      ctl.kill('SIGCONT');
      ctl.kill('SIGINT');
      await new Promise((r) => ctl.once('exit', r));
      await c.close();
      await daemon.stop();
    }
  }, 60_000);
});

describe('NBD access follows the peer credentials', () => {
  it.runIf(haveTools && isRoot)('another uid sees a 0640 segment of its group as a read-only export, and not a 0600 one at all', async () => {
    const stateDir = storeDir('pagerd-nbd-iso-');
    chmodSync(stateDir, 0o755);
    const daemon = await nbdDaemon({ stateDir });
    try {
      const c = await daemon.client();
      const shared = await c.vmsCreate(V_WORKING, MiB, 0, 0o640);
      const secret = await c.vmsCreate(V_WORKING, MiB, 0, 0o600);
      await c.vmMove(shared, 0, 4096, UIO_WRITE, { iov: [new Uint8Array(4096).fill(7)], offset: 0, resid: 4096, segflg: 0 });
      await c.close();
      const as2000 = (args: string[]) => spawnSync('setpriv', ['--reuid=2000', '--regid=0', '--clear-groups', ...args], { encoding: 'utf8' });
      const list = as2000(['nbdinfo', '--list', '--json', `nbd+unix:///?socket=${daemon.nbd}`]);
      expect((JSON.parse(list.stdout) as { exports: { 'export-name': string }[] }).exports.map((e) => e['export-name'])).toEqual([String(shared)]);
      const info = JSON.parse(as2000(['nbdinfo', '--json', daemon.uri(shared)]).stdout) as { exports: { is_read_only: boolean }[] };
      expect(info.exports[0].is_read_only).toBe(true);
      expect(as2000(['qemu-io', '-r', '-f', 'raw', '-c', 'read -P 7 0 4k', daemon.uri(shared)]).status).toBe(0);
      expect(as2000(['nbdinfo', daemon.uri(secret)]).status).not.toBe(0);
      // qemu refuses to open a read-only export for writing.
      expect(as2000(['qemu-io', '-f', 'raw', '-c', 'write -P 1 0 4k', daemon.uri(shared)]).status).not.toBe(0);
    } finally {
      await daemon.stop();
    }
  }, 60_000);
});

describe('NBD protocol violations close that connection only', () => {
  it('malformed handshakes and requests: the daemon stays up, another connection goes on, a deleted segment answers EIO and ends its connection', async () => {
    const daemon = await nbdDaemon();
    try {
      const c = await daemon.client();
      const vmid = await nineSegment(c);
      const bystander = await RawNbd.open(daemon.nbd, String(vmid));
      expect(await c.metrics()).toMatch(/^pagerd_nbd_connections 1$/m);

      const cases: [string, (r: RawNbd) => Promise<void>][] = [
        ['client flags without fixed newstyle', async (r) => void (await r.read(18), r.write(u32(0)))],
        ['unknown client flags', async (r) => void (await r.read(18), r.write(u32(0xff)))],
        ['an option without its magic', async (r) => void (await r.greet(), r.write(Buffer.alloc(16, 0xee)))],
        ['an absurd option length', async (r) => void (await r.greet(), r.option(7, Buffer.alloc(0)), r.write(Buffer.alloc(0)), r.socket.write(Buffer.from([0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff])))],
        ['export name of a segment that does not exist', async (r) => void (await r.greet(), r.option(1, Buffer.from('99999')))],
        ['a request without its magic', async (r) => void (await r.greet(), await r.go(String(vmid)), r.write(Buffer.alloc(28, 0x11)))],
        ['a write larger than announced', async (r) => void (await r.greet(), await r.go(String(vmid)), r.request(1, 1, 0, 0x7fffffff))],
      ];
      for (const [what, act] of cases) {
        const r = await RawNbd.connect(daemon.nbd);
        await act(r);
        expect(await r.closedByServer(), what).toBe(true);
      }
      // Options the server refuses without closing: STARTTLS (policy), an unknown one (unsupported), GO on "" (unknown).
      const polite = await RawNbd.connect(daemon.nbd);
      await polite.greet();
      polite.option(5);
      expect((await polite.optionReply())?.type).toBe(0x80000002);
      polite.option(4242);
      expect((await polite.optionReply())?.type).toBe(0x80000001);
      expect(await polite.go('')).toBe(false);
      // Cut mid-payload: a write whose data never comes.
      expect(await polite.go(String(vmid))).toBe(true);
      polite.request(1, 2, 0, 4096, Buffer.alloc(100));
      polite.close();

      // Requests past the end, and an unknown command: errors, the connection goes on.
      bystander.request(0, 10, MiB - 10, 100);
      expect(await bystander.simpleReply()).toMatchObject({ cookie: 10, error: 22 });
      bystander.request(1, 11, MiB, 1, Buffer.alloc(1));
      expect(await bystander.simpleReply()).toMatchObject({ cookie: 11, error: 28 });
      bystander.request(99, 12, 0, 0);
      expect(await bystander.simpleReply()).toMatchObject({ cookie: 12, error: 22 });
      bystander.request(0, 13, 0, 4096);
      const read = await bystander.simpleReply(4096);
      expect(read?.error).toBe(0);
      expect(read?.data?.every((b) => b === 9)).toBe(true);
      expect(await c.metrics()).toMatch(/^pagerd_request_seconds_count\{op="nbd\.read",outcome="ok"\} 1$/m);

      // The segment deleted under the export: EIO, then the connection ends; an idle one ends too.
      const idle = await RawNbd.open(daemon.nbd, String(vmid));
      await c.vmsDelete(vmid);
      bystander.request(0, 14, 0, 4096);
      expect(await bystander.simpleReply()).toMatchObject({ cookie: 14, error: 5 });
      expect(await bystander.closedByServer()).toBe(true);
      expect(await idle.closedByServer(3000)).toBe(true);
      expect(daemon.proc.exitCode).toBe(null);
      // The peer sees the close before the daemon has handled its own side of it: looked at until it has.
      const nbdConnections = async (): Promise<number> => ((await c.stats()) as { nbdConnections: number }).nbdConnections;
      for (let tries = 0; tries < 100 && (await nbdConnections()) !== 0; tries++) await new Promise((r) => setTimeout(r, 20));
      expect(await nbdConnections()).toBe(0);
      await c.close();
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 60_000);
});

describe('NBD requests pipelined in one write', () => {
  it('each is answered once: those served at once, those that fail at once and those that wait, mixed; a flood of reads in one write is served while another connection goes on', async () => {
    const daemon = await nbdDaemon();
    try {
      const c = await daemon.client();
      const vmid = await nineSegment(c);
      const r = await RawNbd.open(daemon.nbd, String(vmid));

      // One write of six requests: resident reads (served at once), one past the end and an unknown
      // command (failed at once), a flush and a FUA write (they wait for a page-out).
      r.write(Buffer.concat([
        request(0, 1, 0, 4096),
        request(0, 2, MiB - 10, 100),
        request(3, 3, 0, 0),
        request(1, 4, 4096, 4096, Buffer.alloc(4096, 7), 1 /* FUA */),
        request(0, 5, 0, 4096),
        request(99, 6, 0, 0),
      ]));
      const expected: Record<number, { error: number; data?: number }> = { 1: { error: 0, data: 9 }, 2: { error: 22 }, 3: { error: 0 }, 4: { error: 0 }, 5: { error: 0, data: 9 }, 6: { error: 22 } };
      const answered = new Set<number>();
      for (let i = 0; i < 6; i++) {
        const head = (await r.read(16))!;
        const cookie = Number(head.readBigUInt64BE(8));
        const want = expected[cookie];
        expect(want, `cookie ${cookie}`).toBeDefined();
        expect(answered.has(cookie), `cookie ${cookie} answered twice`).toBe(false);
        answered.add(cookie);
        expect(head.readUInt32BE(4), `cookie ${cookie}`).toBe(want.error);
        if (want.data !== undefined) expect((await r.read(4096))!.every((b) => b === want.data)).toBe(true);
      }
      expect(await r.read(1, 300).catch(() => 'nothing more')).toBe('nothing more');
      const back = new Uint8Array(4096);
      await c.vmMove(vmid, 4096, 4096, UIO_READ, { iov: [back], offset: 0, resid: 4096, segflg: 0 });
      expect(back.every((b) => b === 7)).toBe(true);

      // 2,000 reads in one write (more than one turn serves), and a second connection meanwhile.
      const other = await RawNbd.open(daemon.nbd, String(vmid));
      r.write(Buffer.concat(Array.from({ length: 2000 }, (_, i) => request(0, 100 + i, 0, 4096))));
      other.request(0, 7, 0, 4096);
      expect((await other.simpleReply(4096))?.data?.every((b) => b === 9)).toBe(true);
      const flood = new Set<number>();
      for (let i = 0; i < 2000; i++) {
        const head = (await r.read(16))!;
        expect(head.readUInt32BE(4)).toBe(0);
        flood.add(Number(head.readBigUInt64BE(8)));
        await r.read(4096);
      }
      expect(flood.size).toBe(2000);
      r.close();
      other.close();
      await c.close();
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 30_000);
});

describe('NBD flow control', () => {
  it('a client that pipelines reads and never reads the replies holds a bounded amount of the daemon memory', async () => {
    const daemon = await nbdDaemon();
    try {
      const c = await daemon.client();
      const vmid = await c.vmsCreate(V_WORKING, 4 * MiB);
      const rss = () => rssBytes(daemon.proc.pid!);
      const before = rss();
      const greedy = await RawNbd.open(daemon.nbd, String(vmid));
      greedy.socket.pause(); // never reads a reply
      for (let i = 0; i < 400; i++) greedy.request(0, i, (i % 4) * MiB, MiB); // 400 MiB of replies asked for
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(rss() - before).toBeLessThan(96 * MiB);
      // Others are served meanwhile.
      const info = JSON.parse((await run('nbdinfo', ['--json', daemon.uri(vmid)])).stdout) as { exports: { 'export-size': number }[] };
      expect(info.exports[0]['export-size']).toBe(4 * MiB);
      greedy.close();
      await c.close();
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 60_000);
});

describe('NBD fuzz', () => {
  it('2,000 connections of random bytes after valid prefixes: the daemon stays up, memory stays flat, a real client goes on', async () => {
    const daemon = await nbdDaemon();
    try {
      const c = await daemon.client();
      const vmid = await c.vmsCreate(V_WORKING, MiB);
      await c.vmMove(vmid, 0, 4096, UIO_WRITE, { iov: [new Uint8Array(4096).fill(4)], offset: 0, resid: 4096, segflg: 0 });
      const random = mulberry32(77);
      const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
      const rss = () => rssBytes(daemon.proc.pid!);
      const one = async (i: number): Promise<void> => {
        const r = await RawNbd.connect(daemon.nbd);
        const stage = i % 4;
        if (stage >= 1) await r.greet();
        if (stage === 2) r.option(Math.floor(random() * 16), bytes(Math.floor(random() * 64)));
        if (stage === 3 && (await r.go(String(vmid)))) {
          // Requests with random fields (lengths capped so a random write does not promise 4 GiB).
          for (let k = 0; k < 4; k++) {
            const type = Math.floor(random() * 10);
            r.request(type, k, Math.floor(random() * 2 * MiB), Math.floor(random() * 8192), type === 1 ? bytes(Math.floor(random() * 8192)) : undefined, Math.floor(random() * 32));
          }
        }
        r.write(bytes(Math.floor(random() * 200)));
        await new Promise((resolve) => setTimeout(resolve, random() * 5));
        r.close();
      };
      for (let i = 0; i < 200; i++) await one(i); // warm-up: the heap settles before measuring
      const before = rss();
      for (let round = 0; round < 90; round++) await Promise.all(Array.from({ length: 20 }, (_, k) => one(round * 20 + k)));
      expect(daemon.proc.exitCode).toBe(null);
      expect(rss()).toBeLessThan(before + 64 * MiB);
      // A real client, and the native one, are served as before; the fuzzed writes stayed within the segment.
      const info = JSON.parse((await run('nbdinfo', ['--json', daemon.uri(vmid)])).stdout) as { exports: { 'export-size': number }[] };
      expect(info.exports[0]['export-size']).toBe(MiB);
      expect(((await c.stats()) as { segments: number }).segments).toBe(1);
      await c.close();
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 180_000);
});

import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT, EXIT_TABLE, exitStatusHelp } from '../../src/cli/exit-status.js';
import { UIO_WRITE, V_WORKING } from '../../src/client/index.js';
import { PersistentStore } from '../../src/store/persistent-store.js';
import { PAGERD, startDaemon } from '../support/daemon.js';
import { isRoot } from '../support/loop-device.js';
import { storeDir, storeOptions } from '../support/store-files.js';

const PAGERCTL = join(import.meta.dirname, '../../dist/src/cli/pagerctl.js');
const PAGE = 4096;
/** The uid and gid of nobody: a user with no rights here. */
const NOBODY = 65534;

/** The environment without the suite's PAGERD_* settings, plus `env`. */
function cleanEnv(env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PAGERD_')));
  return { ...base, PAGERD_STORE_CREATE_BYTES: '16MiB', ...env };
}

function pagerd(args: string[], options: { env?: NodeJS.ProcessEnv; uid?: number; node?: string[] } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [...(options.node ?? []), PAGERD, ...args], {
    env: cleanEnv(options.env),
    encoding: 'utf8',
    timeout: 30_000,
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
  });
}

function pagerctl(args: string[], options: { uid?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [PAGERCTL, ...args], {
    env: cleanEnv(),
    encoding: 'utf8',
    timeout: 30_000,
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
  });
}

/** One plain line on stderr, no stack trace: what every error must look like. */
function expectOneLine(stderr: string, pattern: RegExp): void {
  expect(stderr.trimEnd().split('\n'), stderr).toHaveLength(1);
  expect(stderr).toMatch(pattern);
  expect(stderr).not.toMatch(/^\s+at /m);
}

describe('exit statuses (one table for both commands)', () => {
  it('--help of both commands prints the table, and --version the package version', () => {
    for (const run of [pagerd(['--help']), pagerctl(['--help'])]) {
      expect(run.status).toBe(0);
      expect(run.stdout).toContain(exitStatusHelp());
    }
    expect(EXIT_TABLE.map((e) => e.status)).toEqual([0, 1, 64, 65, 66, 69, 70, 73, 74, 75, 77, 78]);
    const version = JSON.parse(spawnSync('npm', ['pkg', 'get', 'version'], { encoding: 'utf8', cwd: join(import.meta.dirname, '../..') }).stdout);
    expect(pagerd(['--version']).stdout.trim()).toBe(version);
    expect(pagerctl(['--version']).stdout.trim()).toBe(version);
  });

  it('64: a bad flag or argument, naming the flag', () => {
    const dir = storeDir('pagerd-exit64-');
    const memory = pagerd(['--state-dir', join(dir, 'state'), '--memory', '1000']);
    expect(memory.status).toBe(EXIT.USAGE);
    expectOneLine(memory.stderr, /^pagerd: --memory: a positive multiple of 4096 bytes/);
    const unknown = pagerd(['--frobnicate']);
    expect(unknown.status).toBe(EXIT.USAGE);
    expectOneLine(unknown.stderr, /unknown option '--frobnicate'/);
    expect(existsSync(join(dir, 'state'))).toBe(false);
    for (const args of [['segments', 'create', 'working', '12XB'], ['segments', 'create', 'working', '-5'], ['read', '1', '0', '-6'], ['segments', 'create', 'client', '1MiB', '--mode', '999']]) {
      const run = pagerctl(['--socket', join(dir, 'none.sock'), ...args]);
      expect(run.status, args.join(' ')).toBe(EXIT.USAGE);
      expectOneLine(run.stderr, /^pagerctl: /);
    }
    const json = pagerctl(['--json', 'read', '1', '0', '-6']);
    expect(json.status).toBe(EXIT.USAGE);
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: 'EX_USAGE', reason: 'usage', message: expect.stringContaining("argument 'length'") } });
  });

  it('78: a bad value from a PAGERD_* variable or the config file, naming where it came from', () => {
    const dir = storeDir('pagerd-exit78-');
    const env = pagerd(['--state-dir', join(dir, 'state')], { env: { PAGERD_MEMORY_SIZE: '1000' } });
    expect(env.status).toBe(EXIT.CONFIG);
    expectOneLine(env.stderr, /^pagerd: PAGERD_MEMORY_SIZE: a positive multiple of 4096 bytes/);
    const file = join(dir, 'pagerd.json');
    writeFileSync(file, JSON.stringify({ memory: { minFree: -3 } }));
    const fromFile = pagerd(['--state-dir', join(dir, 'state'), '--config', file]);
    expect(fromFile.status).toBe(EXIT.CONFIG);
    expectOneLine(fromFile.stderr, new RegExp(`^pagerd: config file ${file}: memory\\.minFree`));
    expect(existsSync(join(dir, 'state'))).toBe(false);
  });

  it('78: a store whose metadata a newer pagerd wrote', async () => {
    const stateDir = storeDir('pagerd-exit78-newer-');
    const daemon = await startDaemon({ stateDir });
    expect(await daemon.stop()).toBe(0);
    const db = new Database(join(stateDir, 'pagerd.sqlite'));
    db.pragma('user_version = 999');
    db.close();
    const run = pagerd(['--state-dir', stateDir, '--socket', join(stateDir, 'p.sock')]);
    expect(run.status).toBe(EXIT.CONFIG);
    expectOneLine(run.stderr, /metadata schema version 999 is newer than this pagerd understands/);
  });

  it('65: a store with a corrupted slot fails --check', async () => {
    const stateDir = storeDir('pagerd-exit65-');
    const daemon = await startDaemon({ stateDir });
    const c = await daemon.client();
    const vmid = await c.vmsCreate(V_WORKING, 4 * PAGE);
    await c.vmMove(vmid, 0, 4 * PAGE, UIO_WRITE, { iov: [new Uint8Array(4 * PAGE).fill(9)], offset: 0, resid: 4 * PAGE, segflg: 0 });
    await c.close();
    expect(await daemon.stop()).toBe(0);
    const options = storeOptions(stateDir, { devicePath: join(stateDir, 'backing'), databasePath: join(stateDir, 'pagerd.sqlite') });
    const store = await PersistentStore.open(options);
    const [victim] = store.pageBatchAfter(-1, -1, 1);
    const at = store.dataOffset + victim.slot * PAGE;
    await store.close();
    const fd = openSync(options.devicePath, 'r+');
    writeSync(fd, Buffer.from('bit rot'), 0, 7, at + 10);
    closeSync(fd);
    const check = pagerd(['--state-dir', stateDir, '--check', '--log-level', 'silent']);
    expect(check.status).toBe(EXIT.DATAERR);
    expect(JSON.parse(check.stdout)).toMatchObject({ ok: false, bad: [{ vmid: victim.vmid, pno: victim.pno }] });
  });

  it('69: pagerctl cannot reach the daemon (plain and --json)', () => {
    const socket = join(storeDir('pagerd-exit69-'), 'nobody-here.sock');
    const plain = pagerctl(['--socket', socket, 'status']);
    expect(plain.status).toBe(EXIT.UNAVAILABLE);
    expectOneLine(plain.stderr, /^pagerctl: cannot reach pagerd at /);
    const json = pagerctl(['--socket', socket, '--json', 'status']);
    expect(json.status).toBe(EXIT.UNAVAILABLE);
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: 'EX_UNAVAILABLE', errno: 2, reason: 'unreachable', message: expect.stringContaining(socket) } });
  });

  it('70: an exception nothing handled is an internal error, in one line', () => {
    const dir = storeDir('pagerd-exit70-');
    // Loaded into the real daemon before it starts: a timer that throws once it is serving.
    const fault = join(dir, 'throw-later.mjs');
    writeFileSync(fault, "setTimeout(() => { throw new Error('an injected bug') }, 1500);\n");
    const run = pagerd(['--state-dir', join(dir, 'state'), '--socket', join(dir, 'p.sock'), '--memory', '1MiB', '--log-level', 'warn'], { node: ['--import', fault] });
    expect(run.status).toBe(EXIT.SOFTWARE);
    expectOneLine(run.stderr, /^pagerd: internal error \(uncaught exception\): an injected bug\n$/);
  });

  it('73: the state directory cannot be created', () => {
    const dir = storeDir('pagerd-exit73-');
    writeFileSync(join(dir, 'a-file'), '');
    const run = pagerd(['--state-dir', join(dir, 'a-file', 'state'), '--socket', join(dir, 'p.sock')]);
    expect(run.status).toBe(EXIT.CANTCREAT);
    expectOneLine(run.stderr, /^pagerd: cannot create the state directory .*a-file\/state: ENOTDIR/);
  });

  it.runIf(isRoot && existsSync('/dev/fuse') && spawnSync('sh', ['-c', 'command -v nbdkit && command -v nbdfuse']).status === 0)(
    '74: a device whose reads fail (nbdkit error filter through nbdfuse and a loop device), nothing created',
    async () => {
      const dir = storeDir('pagerd-exit74-');
      const fuse = join(dir, 'fuse');
      mkdirSync(fuse);
      const nbdfuse = spawn('nbdfuse', [fuse, '[', 'nbdkit', '--filter=error', 'memory', '64M', 'error-pread-rate=100%', 'error-pread=EIO', ']'], { stdio: 'ignore' });
      try {
        for (let i = 0; i < 200 && !existsSync(join(fuse, 'nbd')); i++) await new Promise((r) => setTimeout(r, 50));
        const loop = spawnSync('losetup', ['-f', '--show', join(fuse, 'nbd')], { encoding: 'utf8' }).stdout.trim();
        expect(loop).toMatch(/^\/dev\/loop/);
        try {
          const state = join(dir, 'state');
          const run = pagerd(['--state-dir', state, '--socket', join(dir, 'p.sock'), '--device', loop, '--memory', '1MiB']);
          expect(run.status).toBe(EXIT.IOERR);
          expectOneLine(run.stderr, new RegExp(`^pagerd: cannot read the header of ${loop}: EIO`));
          expect(readdirSync(state)).toEqual([]); // the database is not created before the device is read
        } finally {
          spawnSync('losetup', ['-d', loop]);
        }
      } finally {
        spawnSync('fusermount3', ['-u', fuse]);
        nbdfuse.kill();
      }
    },
    60_000,
  );

  it('75: the store, or the metrics address, is in use', async () => {
    const stateDir = storeDir('pagerd-exit75-');
    const first = await startDaemon({ stateDir });
    const second = pagerd(['--state-dir', stateDir, '--socket', join(stateDir, 'other.sock')]);
    expect(second.status).toBe(EXIT.TEMPFAIL);
    expectOneLine(second.stderr, /is in use by another pagerd/);
    expect(await first.stop()).toBe(0);

    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    const dir = storeDir('pagerd-exit75-port-');
    const run = pagerd(['--state-dir', join(dir, 'state'), '--socket', join(dir, 'p.sock'), '--metrics-listen', `127.0.0.1:${port}`]);
    taken.close();
    expect(run.status).toBe(EXIT.TEMPFAIL);
    expectOneLine(run.stderr, /EADDRINUSE/);
    expect(readdirSync(dir)).toEqual([]); // bound before the store is opened: nothing created
  });

  it.runIf(isRoot)('77: a state directory or a socket this user may not use', async () => {
    const dir = storeDir('pagerd-exit77-');
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'root-only'), { mode: 0o755 });
    const run = pagerd(['--state-dir', join(dir, 'root-only', 'state'), '--socket', join(dir, 'root-only', 'p.sock')], { uid: NOBODY });
    expect(run.status).toBe(EXIT.NOPERM);
    expectOneLine(run.stderr, /^pagerd: cannot create the state directory .*: EACCES/);

    const daemon = await startDaemon(); // its socket is 0660 root:root
    const ctl = pagerctl(['--socket', daemon.socket, '--json', 'status'], { uid: NOBODY });
    expect(ctl.status).toBe(EXIT.NOPERM);
    expect(JSON.parse(ctl.stderr)).toMatchObject({ error: { code: 'EX_NOPERM', errno: 13, reason: 'permission' } });
    expect(await daemon.stop()).toBe(0);
  });

  it('1 and 0: pagerctl reports a service error, with --json on stderr', async () => {
    const daemon = await startDaemon();
    const ok = pagerctl(['--socket', daemon.socket, '--json', 'status']);
    expect(ok.status).toBe(EXIT.OK);
    expect(JSON.parse(ok.stdout)).toMatchObject({ up: true, pageSize: PAGE });
    const failed = pagerctl(['--socket', daemon.socket, '--json', 'iowait', '987654']);
    expect(failed.status).toBe(EXIT.SERVICE);
    expect(failed.stdout).toBe('');
    expect(JSON.parse(failed.stderr)).toEqual({ error: { code: 'EINVAL', errno: 22, reason: 'no-such-segment', message: expect.any(String) } });
    expect(await daemon.stop()).toBe(EXIT.OK);
  });
});

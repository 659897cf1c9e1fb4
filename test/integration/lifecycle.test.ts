import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connect } from '../../src/client/index.js';
import { UIO_READ, UIO_WRITE, V_CLIENT, V_WORKING } from '../../src/client/index.js';
import { PAGERD, startDaemon } from '../support/daemon.js';
import { storeDir } from '../support/store-files.js';

const PAGE = 4096;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

describe('daemon lifecycle', () => {
  it('starts with no flags on the embedded default: ./var, a 1 GiB sparse backing file, ./var/pagerd.sock', async () => {
    const cwd = storeDir('pagerd-default-');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PAGERD_')));
    const proc = spawn(process.execPath, [PAGERD], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const deadline = Date.now() + 20_000;
      while (!out.includes('"pagerd ready"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const backing = statSync(join(cwd, 'var', 'backing'));
      expect(backing.size).toBe(1024 ** 3);
      expect(backing.blocks * 512).toBeLessThan(1024 * 1024); // sparse
      expect(statSync(join(cwd, 'var', 'pagerd.sock')).isSocket()).toBe(true);
      expect(statSync(join(cwd, 'var', 'pagerd.sock')).mode & 0o777).toBe(0o660);
      expect(statSync(join(cwd, 'var')).mode & 0o777).toBe(0o750);
      const c = await connect({ socket: join(cwd, 'var', 'pagerd.sock') });
      expect(await c.vmsCreate(V_WORKING, 4096)).toBe(1);
      await c.close();
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  });

  it('SIGTERM with modified pages: exits 0, and a restart finds every byte', async () => {
    const stateDir = storeDir('pagerd-stop-');
    let daemon = await startDaemon({ stateDir, memory: '1MiB' });
    let c = await daemon.client();
    const vmid = await c.vmsCreate(V_WORKING, 2 << 20);
    const data = Uint8Array.from({ length: 2 << 20 }, (_, i) => (i * 13 + 7) & 0xff);
    await c.vmMove(vmid, 0, data.length, UIO_WRITE, uio(data)); // 512 pages through a 256-frame pool
    const stats = await c.stats();
    expect((stats.dirty as number) > 0).toBe(true);
    expect(await daemon.stop()).toBe(0);
    expect(daemon.output()).toContain('stopped cleanly');

    daemon = await startDaemon({ stateDir, memory: '1MiB' });
    c = await daemon.client();
    const back = new Uint8Array(data.length);
    await c.vmMove(vmid, 0, back.length, UIO_READ, uio(back));
    expect(Buffer.from(back).equals(data)).toBe(true);
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it('answers ENOSPC before accepting data the store cannot back', async () => {
    const daemon = await startDaemon({ env: { PAGERD_STORE_CREATE_BYTES: `${17 * PAGE}`, PAGERD_STORE_SPARE_SLOTS: '0' } });
    const c = await daemon.client();
    const vmid = await c.vmsCreate(V_CLIENT, 32 * PAGE);
    const data = new Uint8Array(20 * PAGE).fill(1);
    const u = uio(data);
    await expect(c.vmMove(vmid, 0, data.length, UIO_WRITE, u)).rejects.toMatchObject({ code: 'ENOSPC', errno: 28, reason: 'no-backing-space' });
    expect(u.resid).toBe(4 * PAGE); // 16 pages were accepted, and only those
    await c.vmWritep(vmid, 0, 32);
    await c.vmsIowait(vmid);
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  it('refuses a second daemon on the same state directory at once', async () => {
    const stateDir = storeDir('pagerd-twice-');
    const first = await startDaemon({ stateDir });
    await expect(startDaemon({ stateDir, socket: `${stateDir}/other.sock` })).rejects.toThrow(/in use by another pagerd/);
    expect(await first.stop()).toBe(0);
  });

  it('refuses a device that does not exist with exit 66, naming it, and creates nothing anywhere', async () => {
    const parent = storeDir('pagerd-nodev-');
    const stateDir = join(parent, 'state');
    const device = join(parent, 'no-such-disk');
    const run = spawnSync(process.execPath, [PAGERD, '--state-dir', stateDir, '--socket', join(stateDir, 'p.sock'), '--device', device], { encoding: 'utf8', timeout: 20_000 });
    expect(run.status).toBe(66);
    expect(run.stderr).toContain(`the device ${device} does not exist`);
    expect(readdirSync(parent)).toEqual([]); // no state directory, no device file, no socket
  });

  it('refuses a second daemon on the same socket with exit 75 before creating its backing file', async () => {
    const first = await startDaemon();
    const stateDir = join(storeDir('pagerd-second-'), 'state');
    const run = spawnSync(process.execPath, [PAGERD, '--state-dir', stateDir, '--socket', first.socket], { encoding: 'utf8', timeout: 20_000 });
    expect(run.status).toBe(75);
    expect(run.stderr).toContain(`another pagerd is listening on ${first.socket}`);
    expect(existsSync(stateDir)).toBe(false);
    expect(await first.stop()).toBe(0);
  });

  it('refuses a store.createBytes too small for one page with exit 78 before creating any file, so the corrected setting starts', async () => {
    const stateDir = storeDir('pagerd-tiny-');
    const socket = join(stateDir, 'pagerd.sock');
    const run = spawnSync(process.execPath, [PAGERD, '--state-dir', stateDir, '--socket', socket], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, PAGERD_STORE_CREATE_BYTES: '1KiB' } });
    expect(run.status).toBe(78);
    expect(run.stderr).toMatch(/store\.createBytes 1024 is too small .* \(at least 8192\)/);
    expect(readdirSync(stateDir).filter((f) => f === 'backing' || f.startsWith('pagerd.sqlite'))).toEqual([]);
    const daemon = await startDaemon({ stateDir });
    expect(await daemon.stop()).toBe(0);
  });

  it('reloads the log level on SIGHUP', async () => {
    const dir = storeDir('pagerd-hup-');
    const config = join(dir, 'pagerd.json');
    writeFileSync(config, JSON.stringify({ logLevel: 'info' }));
    // No level from the environment or a flag: those would outrank the file.
    const daemon = await startDaemon({ stateDir: dir, args: ['--config', config], env: { PAGERD_LOG_LEVEL: '' } });
    writeFileSync(config, JSON.stringify({ logLevel: 'debug' }));
    daemon.proc.kill('SIGHUP');
    const deadline = Date.now() + 5000;
    while (!daemon.output().includes('log level reloaded') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(daemon.output()).toContain('"logLevel":"debug","msg":"log level reloaded"');
    expect(await daemon.stop()).toBe(0);
  });

  it('--log-level trace logs every request: operation, arguments, result and µs, as JSON lines on stderr', async () => {
    const daemon = await startDaemon({ args: ['--log-level', 'trace'] });
    const c = await daemon.client();
    const vmid = await c.vmsCreate(V_WORKING, 2 * PAGE);
    await c.vmMove(vmid, PAGE, 3, UIO_WRITE, uio(new Uint8Array(3).fill(7)));
    await expect(c.vmsIowait(vmid + 100)).rejects.toMatchObject({ code: 'EINVAL' });
    await c.close();
    expect(await daemon.stop()).toBe(0);
    const requests = daemon
      .output()
      .split('\n')
      .filter((line) => line.includes('"msg":"request"'))
      .map((line) => JSON.parse(line) as { op: string; args: unknown[]; result: unknown; us: number; level: number });
    expect(requests.find((r) => r.op === 'vmMove')).toMatchObject({ level: 10, args: [vmid, PAGE, 3, UIO_WRITE, 0, 3, 0, PAGE + 3, '3 bytes'], result: [3, '0 bytes'], us: expect.any(Number) });
    expect(requests.find((r) => r.op === 'vmsIowait')).toMatchObject({ args: [vmid + 100], result: 'EINVAL (no-such-segment)' });
  });

  it('--log-format pretty prints log lines for a person, not JSON', async () => {
    const stateDir = storeDir('pagerd-pretty-');
    const proc = spawn(process.execPath, [PAGERD, '--state-dir', stateDir, '--socket', join(stateDir, 'p.sock'), '--memory', '1MiB', '--log-format', 'pretty'], {
      env: { ...process.env, PAGERD_LOG_LEVEL: 'info', PAGERD_STORE_CREATE_BYTES: '16MiB' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let pretty = '';
    proc.stderr.on('data', (d: Buffer) => (pretty += d.toString()));
    const deadline = Date.now() + 20_000;
    while (!/pagerd ready/.test(pretty) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    expect(pretty).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: pagerd ready/m);
    expect(pretty).not.toMatch(/^\{"level"/m);
  });

  it('exits 78 on a bad configuration value, naming the key', async () => {
    const err = await startDaemon({ env: { PAGERD_MEMORY_MIN_FREE: '-3' } }).catch((e: Error) => e);
    expect(String(err)).toMatch(/exited with 78/);
    expect(String(err)).toMatch(/pagerd: PAGERD_MEMORY_MIN_FREE: /);
  });
});

describe('pagerd --check', () => {
  it('checks a stopped store offline and prints a JSON summary', async () => {
    const stateDir = storeDir('pagerd-check-');
    const daemon = await startDaemon({ stateDir });
    const c = await daemon.client();
    const vmid = await c.vmsCreate(V_WORKING, 8 * PAGE);
    await c.vmMove(vmid, 0, 8 * PAGE, UIO_WRITE, uio(new Uint8Array(8 * PAGE).fill(4)));
    await c.close();
    expect(await daemon.stop()).toBe(0);
    const r = spawnSync(process.execPath, [PAGERD, '--state-dir', stateDir, '--check', '--log-level', 'warn'], { env: { ...process.env, PAGERD_STORE_CREATE_BYTES: '64MiB' }, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ integrity: 'ok', ok: true, pages: 8 });
  });
});

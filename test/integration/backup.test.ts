import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING, type PagerClient } from '../../src/client/index.js';
import { PAGERD, startDaemon } from '../support/daemon.js';
import { mulberry32 } from '../support/random.js';
import { storeDir } from '../support/store-files.js';

const PAGERCTL = join(import.meta.dirname, '../../dist/src/cli/pagerctl.js');
const PAGE = 4096;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

function pagerctl(socket: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [PAGERCTL, '--socket', socket, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The restore procedure of docs/operations.md: the backup's two files into a fresh state directory. */
function restore(backup: string): string {
  const stateDir = join(storeDir('pagerd-restored-'), 'state');
  mkdirSync(stateDir);
  expect(spawnSync('cp', ['--sparse=always', join(backup, 'backing'), join(stateDir, 'backing')]).status).toBe(0);
  copyFileSync(join(backup, 'pagerd.sqlite'), join(stateDir, 'pagerd.sqlite'));
  return stateDir;
}

/** pagerd --check on a restored store: its report (ok, pages) once it exits 0. */
function check(stateDir: string): { ok: boolean; pages: number } {
  const r = spawnSync(process.execPath, [PAGERD, '--state-dir', stateDir, '--check', '--log-level', 'silent'], { encoding: 'utf8' });
  expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout);
}

/** Copies a file 256 KiB at a time with a pause after each: a copy that takes a second or more. */
async function slowCopy(from: string, to: string): Promise<void> {
  const input = await open(from, 'r');
  const output = await open(to, 'w');
  const chunk = Buffer.alloc(256 * 1024);
  for (let at = 0; ; at += chunk.length) {
    const { bytesRead } = await input.read(chunk, 0, chunk.length, at);
    if (bytesRead === 0) break;
    await output.write(chunk, 0, bytesRead, at);
    await new Promise((r) => setTimeout(r, 5));
  }
  await input.close();
  await output.close();
}

/** Rewrites random pages of its own segment and pages them out, until `running()` says stop. */
async function pageOutLoad(c: PagerClient, seed: number, running: () => boolean): Promise<number> {
  const vmid = await c.vmsCreate(V_WORKING, 512 * PAGE);
  const random = mulberry32(seed);
  let cycles = 0;
  while (running()) {
    const pages = Array.from({ length: 32 }, () => Math.floor(random() * 512));
    await Promise.all(pages.map((p) => c.vmMove(vmid, p * PAGE, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(cycles & 0xff)))));
    await c.vmWritep(vmid, 0, 512);
    await c.vmsIowait(vmid);
    cycles++;
  }
  return cycles;
}

describe('pagerctl backup: a consistent copy of a live store', () => {
  it('restored into a fresh state directory, serves every byte written before it began and none written after', async () => {
    const daemon = await startDaemon({ memory: '4MiB' });
    const c = await daemon.client();
    const vmid = await c.vmsCreate(V_WORKING, 64 * PAGE);
    const before = new Uint8Array(64 * PAGE).fill(0xa5);
    await c.vmMove(vmid, 0, before.length, UIO_WRITE, uio(before)); // modified, not yet paged out
    const backup = join(storeDir('pagerd-backup-'), 'copy');
    const made = pagerctl(daemon.socket, ['--json', 'backup', backup]);
    expect(made.status, made.stderr).toBe(0);
    expect(JSON.parse(made.stdout)).toMatchObject({ dir: backup, deviceBytes: 64 * 1024 * 1024 });
    expect(readdirSync(backup).sort()).toEqual(['backing', 'backup.json', 'pagerd.sqlite']);
    expect(existsSync(join(daemon.stateDir, 'pagerd.sqlite.backup'))).toBe(false); // moved into the backup
    await c.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(0x11))); // after: not in it
    await c.close();
    expect(await daemon.stop()).toBe(0);

    const stateDir = restore(backup);
    expect(check(stateDir)).toMatchObject({ ok: true, pages: 64 });
    const restored = await startDaemon({ stateDir, memory: '4MiB' });
    const r = await restored.client();
    const got = new Uint8Array(64 * PAGE);
    await r.vmMove(vmid, 0, got.length, UIO_READ, uio(got));
    expect(Buffer.from(got).equals(Buffer.from(before))).toBe(true);
    await r.close();
    expect(await restored.stop()).toBe(0);
  }, 120_000);

  it('taken while four clients page out without pause, restores to a store whose own --check passes', async () => {
    const daemon = await startDaemon({ memory: '2MiB', env: { PAGERD_STORE_CREATE_BYTES: '48MiB' } });
    const clients = await Promise.all(Array.from({ length: 4 }, () => daemon.client()));
    let loading = true;
    const load = Promise.all(clients.map((c, i) => pageOutLoad(c, i + 1, () => loading)));
    await new Promise((r) => setTimeout(r, 1500)); // the load is under way
    // One made through the client library by a slow copier (a slow backup medium): the load pages
    // out all through the copy, so only the daemon's hold keeps the copy and the metadata together.
    const slow = join(storeDir('pagerd-backup-slow-'), 'copy');
    mkdirSync(slow);
    const copier = await daemon.client();
    await slowCopy(await copier.backupBegin(), join(slow, 'backing'));
    const snapshot = await copier.backupFinish();
    copyFileSync(snapshot, join(slow, 'pagerd.sqlite'));
    await copier.close();
    const backups: string[] = [slow];
    for (let i = 0; i < 2; i++) {
      const backup = join(storeDir('pagerd-backup-load-'), 'copy');
      const made = pagerctl(daemon.socket, ['backup', backup]);
      expect(made.status, made.stderr).toBe(0);
      backups.push(backup);
    }
    loading = false;
    const cycles = (await load).reduce((a, b) => a + b, 0);
    expect(cycles).toBeGreaterThan(10);
    await Promise.all(clients.map((c) => c.close()));
    expect(await daemon.stop()).toBe(0);
    for (const backup of backups) {
      const report = check(restore(backup));
      expect(report.ok).toBe(true);
      expect(report.pages).toBeGreaterThan(0);
    }
  }, 180_000);

  it('one backup at a time (EBUSY), only root or the daemon user, and into an empty directory only', async () => {
    const daemon = await startDaemon();
    const first = await daemon.client();
    await first.backupBegin();
    const second = await daemon.client();
    await expect(second.backupBegin()).rejects.toMatchObject({ code: 'EBUSY', reason: 'backup-in-progress' });
    await expect(second.backupFinish()).rejects.toMatchObject({ code: 'EINVAL', reason: 'no-backup' });
    await first.close(); // a caller that goes away lets page-outs go on: the next backup may begin
    await new Promise((r) => setTimeout(r, 100));
    expect(await second.backupBegin()).toBe(join(daemon.stateDir, 'backing'));
    await second.backupFinish();
    await second.close();
    const full = storeDir('pagerd-backup-full-');
    const refused = pagerctl(daemon.socket, ['backup', join(full, '..')]);
    expect(refused.status).toBe(73);
    expect(refused.stderr).toMatch(/is not empty/);
    expect(await daemon.stop()).toBe(0);
  });
});

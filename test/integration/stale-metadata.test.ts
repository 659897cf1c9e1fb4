import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING, type PagerClient } from '../../src/client/index.js';
import { PAGERD, startDaemon, type RunningDaemon } from '../support/daemon.js';

const PAGE = 4096;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

/** Writes `versions` versions of pages 0..31, each acknowledged by vms_iowait (a page-out cycle each). */
async function writeVersions(c: PagerClient, vmid: number, from: number, versions: number): Promise<void> {
  for (let v = from; v < from + versions; v++) {
    await c.vmMove(vmid, 0, 32 * PAGE, UIO_WRITE, uio(new Uint8Array(32 * PAGE).fill(v)));
    await c.vmWritep(vmid, 0, 32);
    await c.vmsIowait(vmid);
  }
}

/** Starts pagerd on `stateDir` expecting a refusal; answers its exit status and stderr. */
function refusedStart(daemon: RunningDaemon): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [PAGERD, '--state-dir', daemon.stateDir, '--socket', daemon.socket, '--memory', '4MiB'], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stderr: r.stderr };
}

/** A store's first life, ending in a clean stop: a segment, versions 1-2 of its pages 0..31. */
async function firstLife(): Promise<{ daemon: RunningDaemon; vmid: number }> {
  const daemon = await startDaemon();
  const c = await daemon.client();
  const vmid = await c.vmsCreate(V_WORKING, 32 * PAGE);
  await writeVersions(c, vmid, 1, 2);
  await c.close();
  expect(await daemon.stop()).toBe(0);
  return { daemon, vmid };
}

/**
 * Two lives of a store, each ending in a clean stop: the first life, then a copy of `name` (the
 * database or the device) kept aside as `<file>.old`, then versions 3-6.
 */
async function twoLivesKeeping(name: string): Promise<{ daemon: RunningDaemon; vmid: number; file: string }> {
  const { daemon, vmid } = await firstLife();
  const file = join(daemon.stateDir, name);
  copyFileSync(file, `${file}.old`);
  const again = await startDaemon({ stateDir: daemon.stateDir });
  const c2 = await again.client();
  await writeVersions(c2, vmid, 3, 4);
  await c2.close();
  expect(await again.stop()).toBe(0);
  return { daemon, vmid, file };
}

describe('metadata that cannot lie: a device and a database that do not belong together are refused', () => {
  it('a -wal file deleted after kill -9: exit 65 naming the problem, not stale pages', async () => {
    // A clean stop first: the database file itself then holds the store, marked cleanly shut down.
    const { daemon: first, vmid } = await firstLife();
    const daemon = await startDaemon({ stateDir: first.stateDir });
    const c = await daemon.client();
    await writeVersions(c, vmid, 3, 6);
    await daemon.kill();
    const wal = join(daemon.stateDir, 'pagerd.sqlite-wal');
    expect(existsSync(wal)).toBe(true);
    rmSync(wal);
    const r = refusedStart(daemon);
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/the metadata is older than the device/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('an older copy of the database restored beside a newer device: exit 65', async () => {
    const { daemon, file } = await twoLivesKeeping('pagerd.sqlite');
    copyFileSync(`${file}.old`, file);
    const r = refusedStart(daemon);
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/the metadata is older than the device/);
  });

  it('an older image of the device restored beside a newer database: exit 65; the matching pair starts and reads the last versions', async () => {
    const { daemon, vmid, file } = await twoLivesKeeping('backing');
    copyFileSync(file, `${file}.new`);
    copyFileSync(`${file}.old`, file);
    const r = refusedStart(daemon);
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/the device is older than the metadata/);

    copyFileSync(`${file}.new`, file);
    const third = await startDaemon({ stateDir: daemon.stateDir });
    const c = await third.client();
    const back = new Uint8Array(32 * PAGE);
    await c.vmMove(vmid, 0, back.length, UIO_READ, uio(back));
    expect(back.every((b) => b === 6)).toBe(true);
    await c.close();
    expect(await third.stop()).toBe(0);
  });
});

describe('metadata that cannot lie: a column whose type a flipped bit changed', () => {
  // A bit of a record's type byte turns a BLOB into TEXT; SQLite's integrity check still says ok.
  const tampers: [string, string, RegExp][] = [
    ['the free-slot map', 'UPDATE free_slot_map SET bits = CAST(bits AS TEXT)', /free-slot-map row \d+ is not a BLOB/],
    ['an unsynced page-out row', "INSERT INTO unsynced_pageouts (cycle, entries) VALUES (999, 'text')", /unsynced page-out row 999 is not a BLOB/],
    ['an unsynced page-out naming a slot past the device', "INSERT INTO unsynced_pageouts (cycle, entries) VALUES (999, x'0100000000000000ffffffff00000000')", /unsynced page-out row 999 names slot 4294967294, past the device's/],
    ['a page-map row', 'UPDATE page_map SET entries = CAST(entries AS TEXT)', /page-map row \(segment \d+, run 0\) has malformed entries/],
    ['a free-slot-map row cut short', 'UPDATE free_slot_map SET bits = substr(bits, 1, 100)', /free-slot-map row \d+ is 100 bytes, not 2048/],
    ['an unsynced page-out row of part of an entry', "INSERT INTO unsynced_pageouts (cycle, entries) VALUES (999, x'01000000')", /unsynced page-out row 999 is 4 bytes, not whole entries of 16/],
  ];
  for (const [what, sql, message] of tampers) {
    it(`${what}: the start is refused with 65 naming it, and so is --check, not a crash (70)`, async () => {
      const { daemon } = await firstLife();
      const db = new Database(join(daemon.stateDir, 'pagerd.sqlite'));
      db.exec(sql);
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      db.close();
      const r = refusedStart(daemon);
      expect(r.status, r.stderr).toBe(65);
      expect(r.stderr).toMatch(message);
      const check = spawnSync(process.execPath, [PAGERD, '--state-dir', daemon.stateDir, '--check'], { encoding: 'utf8', timeout: 20_000 });
      expect(check.status, check.stderr).toBe(65);
      expect(`${check.stdout}${check.stderr}`).toMatch(message);
    });
  }
});

describe('metadata that cannot lie: a device and a database of different stores, or one of them lost or damaged', () => {
  it('a damaged header, a lost database, another store\'s database, a blank device: each refused with 65 naming it, not 78', async () => {
    const { daemon } = await firstLife();
    const other = await firstLife();
    const database = join(daemon.stateDir, 'pagerd.sqlite');
    const backing = join(daemon.stateDir, 'backing');
    copyFileSync(database, `${database}.keep`);
    copyFileSync(backing, `${backing}.keep`);
    const restore = (): void => {
      copyFileSync(`${database}.keep`, database);
      copyFileSync(`${backing}.keep`, backing);
    };
    const cases: [string, () => void, RegExp][] = [
      ['a flipped bit in the header', () => flipByte(backing, 20), /starts with a pagerd header that fails its checksum \(damaged\)/],
      ['the database lost', () => rmSync(database), /metadata database .* is missing or empty \(lost\)/],
      ['another store\'s database', () => copyFileSync(join(other.daemon.stateDir, 'pagerd.sqlite'), database), /belongs to store [0-9a-f]{32}/],
      ['a blank device', () => writeAt(backing, 0, Buffer.alloc(4096)), /is blank, but the metadata in .* belongs to store/],
    ];
    for (const [what, damage, message] of cases) {
      restore();
      damage();
      const r = refusedStart(daemon);
      expect(r.status, `${what}: ${r.stderr}`).toBe(65);
      expect(r.stderr, what).toMatch(message);
    }
    restore();
    const again = await startDaemon({ stateDir: daemon.stateDir });
    expect(await again.stop()).toBe(0);
  });
});

function flipByte(path: string, at: number): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0x01;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

function writeAt(path: string, at: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, bytes, 0, bytes.length, at);
  closeSync(fd);
}

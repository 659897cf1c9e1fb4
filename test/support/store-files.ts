import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { PageSeal } from '../../src/meta/page-seal.js';
import { crc32c } from '../../src/native/addon.js';
import { PersistentStore, type StoreOptions } from '../../src/store/persistent-store.js';

const made: string[] = [];

/**
 * A fresh directory for a store's files (on /dev/shm when there is one: fsync is free there).
 * Removed after the test file by removeStoreDirs() (test/support/cleanup.ts): /dev/shm is memory,
 * and a run of the suite made gigabytes of them.
 */
export function storeDir(prefix = 'pagerd-store-'): string {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, prefix));
  made.push(dir);
  return dir;
}

/** Removes a directory storeDir made (before the file ends: tests that make thousands). */
export function removeStoreDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  const i = made.indexOf(dir);
  if (i >= 0) made.splice(i, 1);
}

export function removeStoreDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export function storeOptions(dir: string, overrides: Partial<StoreOptions> = {}): StoreOptions {
  return {
    devicePath: join(dir, 'backing'),
    databasePath: join(dir, 'meta.sqlite'),
    pageSize: 4096,
    createBytes: 4096 * 65,
    preallocate: false,
    spareSlots: 0,
    maxBatchPages: 256,
    format: false,
    ...overrides,
  };
}

export function openStore(dir: string, overrides: Partial<StoreOptions> = {}): Promise<PersistentStore> {
  return PersistentStore.open(storeOptions(dir, overrides));
}

/**
 * Seals every page-map row of a stopped store's database again, as pagerd would have written it:
 * for tests of what must catch a wrong row that its own seal does not (a bug, not a flipped bit).
 */
export function resealRows(db: Database.Database): void {
  const seal = new PageSeal(db.prepare("SELECT value FROM meta WHERE key = 'store_id'").pluck().get() as string);
  for (const { vmid, run, entries } of db.prepare('SELECT vmid, run, entries FROM page_map').all() as { vmid: number; run: number; entries: Buffer }[]) {
    db.prepare('UPDATE page_map SET seal = ? WHERE vmid = ? AND run = ?').run(seal.ofRow(crc32c(entries), vmid, run), vmid, run);
  }
}

import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PersistentStore, type StoreOptions } from '../../src/store/persistent-store.js';

/** A fresh directory for a store's files (on /dev/shm when there is one: fsync is free there). */
export function storeDir(prefix = 'pagerd-store-'): string {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  return mkdtempSync(join(base, prefix));
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

import Database from 'better-sqlite3';
import { migrate } from './migrations.js';

export type { Database } from 'better-sqlite3';

/**
 * Opens the metadata database on the event loop's connection: WAL with synchronous=FULL (a commit
 * is durable when it returns; after switching to WAL the default is not FULL, so it is set
 * explicitly), and the schema migrated to this version. Page-out cycles commit on a second
 * connection in the metadata writer's thread (metadata-writer.ts), with NORMAL: the store syncs
 * the WAL itself, off the event loop (wal-sync.ts).
 */
export function openDatabase(path: string): Database.Database {
  const db = openConnection(path, 'FULL');
  try {
    migrate(db);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * A connection to the metadata database. Locking is SQLite's normal mode: two connections share
 * the WAL index, and the daemon keeps other processes out with the device's lock.
 */
export function openConnection(path: string, synchronous: 'FULL' | 'NORMAL'): Database.Database {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${synchronous}`);
    db.pragma('busy_timeout = 5000');
    // A page-out cycle rewrites rows all over the page map: a 32 MiB page cache (grown only as
    // used) keeps a few million rows' B-tree pages in memory, and checkpointing at 32 MiB of WAL
    // instead of 4 MiB stops a 16k-page cycle from checkpointing (a write and fsync of the whole
    // table) at nearly every commit.
    db.pragma('cache_size = -32768');
    db.pragma('wal_autocheckpoint = 8192'); // wal-space.ts checkpoints sooner on a small file system
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Runs SQLite's integrity check; answers 'ok' or the problems it found. */
export function integrityCheck(db: Database.Database): string {
  const rows = db.pragma('integrity_check') as { integrity_check: string }[];
  return rows.map((r) => r.integrity_check).join('; ');
}

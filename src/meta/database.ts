import Database from 'better-sqlite3';
import { migrate } from './migrations.js';

export type { Database } from 'better-sqlite3';

/**
 * Opens the metadata database: WAL with synchronous=FULL (a commit is durable when it returns;
 * after switching to WAL the default is not FULL, so it is set explicitly; the store runs a
 * page-out cycle's commit with NORMAL and syncs the WAL itself, off the event loop: wal-sync.ts),
 * foreign-key checks off (the tables do not use them), and the schema migrated to this version.
 *
 * Locking mode is exclusive, set before the first access: the daemon is the database's only user
 * (it holds the device's lock too), so SQLite keeps the WAL index in its own memory and takes no
 * file locks per statement (a page-map lookup costs ~1 µs less: a quarter of it here).
 */
export function openDatabase(path: string): Database.Database {
  const db = new Database(path);
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    // A page-out cycle rewrites rows all over the page map: a 32 MiB page cache (grown only as
    // used) keeps a few million rows' B-tree pages in memory, and checkpointing at 32 MiB of WAL
    // instead of 4 MiB stops a 16k-page cycle from checkpointing (a write and fsync of the whole
    // table) at nearly every commit.
    db.pragma('cache_size = -32768');
    db.pragma('wal_autocheckpoint = 8192'); // wal-space.ts checkpoints sooner on a small file system
    migrate(db);
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

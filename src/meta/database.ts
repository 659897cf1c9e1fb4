import Database from 'better-sqlite3';
import { migrate } from './migrations.js';

export type { Database } from 'better-sqlite3';

/**
 * Opens the metadata database: WAL with synchronous=FULL (a commit is durable when it returns;
 * after switching to WAL the default is not FULL, so it is set explicitly), foreign-key checks
 * off (the tables do not use them), and the schema migrated to this version.
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

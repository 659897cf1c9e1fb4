import { statSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Database } from './database.js';

/** The WAL file's size when SQLite checkpoints it itself (wal_autocheckpoint 8192 frames of a 4 KiB page and its 24-byte header). */
const AUTOCHECKPOINT_FILE_BYTES = 32 + 8192 * (4096 + 24);
/** Free space is looked up at most this often (ms): a statfs per commit would cost more than it tells. */
const FREE_SPACE_MAX_AGE_MS = 1000;

/**
 * The metadata database's own space. SQLite checkpoints only after a commit that succeeded, at
 * AUTOCHECKPOINT_BYTES of WAL; on a small file system the WAL fills it first, every commit then
 * fails with SQLITE_FULL and no checkpoint ever runs again. So:
 *
 * - after each commit the WAL may hold at most a quarter of the free space (SQLite's own
 *   checkpoint at 32 MiB stands where that is more); past it, a TRUNCATE checkpoint copies it into
 *   the database and gives its space back;
 * - a commit that failed with SQLITE_FULL is retried once after such a checkpoint (the WAL starts
 *   over in the space it had). If even that fails the error stands, and it is temporary: the next
 *   commit tries again, and succeeds once space returns.
 */
export class WalSpace {
  private readonly walPath: string;
  private readonly dir: string;
  private freeBytes = Infinity;
  private freeCheckedAt = -Infinity;
  /** Checkpoints run for lack of space, and commits retried after SQLITE_FULL (stats). */
  checkpoints = 0;
  retries = 0;

  constructor(
    private readonly db: Database,
    databasePath: string,
  ) {
    this.walPath = `${databasePath}-wal`;
    this.dir = dirname(databasePath);
  }

  /** Bytes free for an unprivileged writer in the state directory's file system (as of at most a second ago). */
  get free(): number {
    const now = performance.now();
    if (now - this.freeCheckedAt >= FREE_SPACE_MAX_AGE_MS) {
      this.freeCheckedAt = now;
      try {
        const fs = statfsSync(this.dir);
        this.freeBytes = fs.bavail * fs.bsize;
      } catch {
        this.freeBytes = Infinity; // cannot tell: leave it to SQLite's own checkpoints
      }
    }
    return this.freeBytes;
  }

  /**
   * Runs `commit` (a transaction) and answers what it answers; on SQLITE_FULL checkpoints and runs
   * it once more. Then keeps the WAL within its budget: only on a file system with less than four
   * times SQLite's own checkpoint size free is the WAL's size looked at.
   */
  commit<T>(commit: () => T): T {
    let result: T;
    try {
      result = commit();
    } catch (err) {
      if (!isFull(err)) throw err;
      this.retries++;
      this.freeCheckedAt = -Infinity;
      if (!this.checkpoint()) throw err;
      result = commit();
    }
    const budget = this.free / 4;
    if (budget < AUTOCHECKPOINT_FILE_BYTES && this.walBytes() > budget) this.checkpoint();
    return result;
  }

  /** Copies the WAL into the database and truncates it; false if that could not be done now. */
  private checkpoint(): boolean {
    this.checkpoints++;
    try {
      const [row] = this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      return row?.busy === 0;
    } catch {
      return false; // the database file could not grow either: space must come back first
    }
  }

  private walBytes(): number {
    try {
      return statSync(this.walPath).size;
    } catch {
      return 0;
    }
  }
}

export function isFull(err: unknown): boolean {
  return (err as { code?: string })?.code === 'SQLITE_FULL';
}

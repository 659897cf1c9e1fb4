import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { GroupCommit } from '../group-commit.js';

/** The WAL file as WalSync uses it (a FileHandle opened for reading). */
export interface WalFile {
  datasync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Makes commits made with synchronous=NORMAL durable off the event loop. Such a commit returns
 * once SQLite has written its WAL frames, without an fsync; `durable()` then fdatasyncs the WAL
 * file in the thread pool. One sync covers every commit made before it started, so commits that
 * arrive during a sync share the next one (group commit).
 *
 * That is synchronous=FULL's sync, moved: FULL fdatasyncs the WAL after writing a commit's frames;
 * here the same file is synced before anything that depends on the commit is acknowledged or
 * reuses what it freed. Checkpoints sync the WAL before and the database after copying, in NORMAL
 * as in FULL. The first sync also syncs the
 * directory, where SQLite created the WAL file (FULL does that too).
 *
 * A failed sync is never retried and trusted: Linux reports a writeback error once and marks the
 * pages that failed clean, so a later fdatasync can succeed with frames missing from the file, and
 * SQLite's recovery would stop at the first missing frame, dropping every commit after it. Every
 * later durable() rejects with the first failure: the store fails permanently, and its next open
 * recovers from what reached the disk.
 */
export class WalSync {
  private readonly walPath: string;
  private wal: WalFile | undefined;
  /** NORMAL commits noted so far, how many of them are known durable, and how many the sync in flight covers. */
  private commits = 0;
  private durableCommits = 0;
  private syncingThrough = 0;
  private readonly syncs = new GroupCommit();
  /** The first sync that failed: sticky (see the class comment). */
  private failure: Error | undefined;

  constructor(
    databasePath: string,
    private readonly openWal: (path: string) => Promise<WalFile> = (path) => open(path, 'r'),
  ) {
    this.walPath = `${databasePath}-wal`;
  }

  /** A transaction committed with synchronous=NORMAL: its frames are in the WAL, not yet synced. */
  committed(): void {
    this.commits++;
  }

  /** Resolves once every commit noted before the call is on stable storage; rejects if a sync failed. */
  durable(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (!this.syncs.busy && this.durableCommits === this.commits) return Promise.resolve();
    return this.syncs.request(() => this.sync(), this.commits <= this.syncingThrough);
  }

  /** Closes the WAL file's handle (after SQLite has closed the database). */
  async close(): Promise<void> {
    await this.syncs.idle();
    await this.wal?.close();
    this.wal = undefined;
  }

  private async sync(): Promise<void> {
    const through = (this.syncingThrough = this.commits);
    if (this.failure !== undefined) throw this.failure;
    try {
      if (this.wal === undefined) {
        this.wal = await this.openWal(this.walPath);
        await syncDirectory(dirname(this.walPath));
      }
      await this.wal.datasync();
      this.durableCommits = through;
    } catch (err) {
      this.failure ??= err as Error;
      throw this.failure;
    }
  }
}

async function syncDirectory(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

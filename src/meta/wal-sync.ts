import { open } from 'node:fs/promises';
import { dirname } from 'node:path';

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
 * as in FULL; a FULL commit syncs every NORMAL one before it. The first sync also syncs the
 * directory, where SQLite created the WAL file (FULL does that too).
 *
 * A failed sync is never retried and trusted: Linux reports a writeback error once and marks the
 * pages that failed clean, so a later fdatasync can succeed with frames missing from the file, and
 * SQLite's recovery would stop at the first missing frame, dropping every commit after it. Every
 * later durable() rejects with the first failure, and no work waiting for durability runs: the
 * store fails permanently, and its next open recovers from what reached the disk.
 */
export class WalSync {
  private readonly walPath: string;
  private wal: WalFile | undefined;
  /** Commits noted so far, and how many of them are known durable. */
  private commits = 0;
  private durableCommits = 0;
  /** The sync in flight, and the commits it covers (those noted before it started). */
  private running: Promise<void> | undefined;
  private runningThrough = 0;
  /** The sync queued behind the one in flight: it covers the commits made since that one started. */
  private queued: Promise<void> | undefined;
  /** The first sync that failed: sticky (see the class comment). */
  private failure: Error | undefined;
  /** Work waiting for commits to be durable: each runs once a sync covers its commit. */
  private waiting: { through: number; run: () => void }[] = [];

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

  /** A transaction committed with synchronous=FULL: it and every commit before it are durable (unless a sync already failed). */
  committedDurably(): void {
    this.commits++;
    if (this.failure === undefined) this.reached(this.commits);
  }

  /** Resolves once every commit noted before the call is on stable storage; rejects if the sync failed. */
  durable(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.queued !== undefined) return this.queued;
    if (this.running === undefined) return this.durableCommits === this.commits ? Promise.resolve() : this.start();
    if (this.commits <= this.runningThrough) return this.running;
    this.queued = this.running.then(
      () => this.next(),
      () => this.next(),
    );
    return this.queued;
  }

  /**
   * Runs `then` once every commit noted so far is durable (never, if a sync fails).
   */
  whenDurable(then: () => void): void {
    if (this.failure !== undefined) return;
    if (this.durableCommits === this.commits) return then();
    this.waiting.push({ through: this.commits, run: then });
    this.durable().catch(() => undefined); // its failure is its waiters' to hear; `then` waits on
  }

  /** Closes the WAL file's handle (after SQLite has closed the database). */
  async close(): Promise<void> {
    await Promise.allSettled([this.running, this.queued]);
    await this.wal?.close();
    this.wal = undefined;
  }

  private next(): Promise<void> {
    this.queued = undefined;
    return this.failure !== undefined ? Promise.reject(this.failure) : this.start();
  }

  private start(): Promise<void> {
    this.runningThrough = this.commits;
    this.running = this.sync(this.commits);
    return this.running;
  }

  private async sync(through: number): Promise<void> {
    try {
      if (this.wal === undefined) {
        this.wal = await this.openWal(this.walPath);
        await syncDirectory(dirname(this.walPath));
      }
      await this.wal.datasync();
      this.reached(through);
    } catch (err) {
      this.failure ??= err as Error;
      this.waiting = [];
      throw err;
    } finally {
      this.running = undefined;
    }
  }

  private reached(through: number): void {
    if (through <= this.durableCommits) return;
    this.durableCommits = through;
    const ready = this.waiting.filter((w) => w.through <= through);
    if (ready.length === 0) return;
    this.waiting = this.waiting.filter((w) => w.through > through);
    for (const w of ready) w.run();
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

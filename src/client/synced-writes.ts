import { fdatasync } from 'node:fs';
import { promisify } from 'node:util';
import { GroupCommit } from '../group-commit.js';
import { writeRunsInOneJob, type WriteRun } from '../native/addon.js';

const datasync = promisify(fdatasync);

interface Waiting {
  run: WriteRun;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * A file's writes made durable in groups. The writes asked for in one turn go to the file
 * system together, as one job in libuv's thread pool (one hand-off there and back for the lot,
 * where a write of its own costs one each: tens of µs of wake-ups apiece on a VM); once written,
 * they wait for an fdatasync begun after that, shared with every write done while one runs
 * (group commit). A write resolves once durable; a failed write fails its group (with the
 * failing call's errno), a failed fdatasync every write it may have covered: those it was begun
 * for, and those whose writes began before it ended (they wait for the next one). Linux reports
 * a writeback error to one fdatasync only, so the next may succeed with their bytes lost.
 */
export class SyncedWrites {
  private waiting: Waiting[] = [];
  private readonly flushes = new GroupCommit();
  /** Groups at the file system (their writes or fdatasync not yet returned). */
  private readonly groups = new Set<Promise<void>>();
  /** The last failed fdatasync's error, and how many have failed. */
  private syncError: Error | undefined;
  private syncFailures = 0;
  /** fdatasyncs started. */
  syncs = 0;

  constructor(
    private readonly fd: number,
    /** fdatasync(2) of the file (a test may stand in for it, to fail one). */
    private readonly sync: (fd: number) => Promise<void> = datasync,
  ) {}

  /** Writes `buffers` back to back from `position`; resolves once they are durable. They must not change until then. */
  write(position: number, buffers: readonly Uint8Array[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ run: { position, buffers }, resolve, reject });
      if (this.waiting.length === 1) queueMicrotask(() => this.startGroup());
    });
  }

  /**
   * Resolves once no write asked for so far is at the file system. The file must stay open until
   * then: the thread pool's calls name it by descriptor, and a descriptor closed earlier may be
   * another file's by the time they run.
   */
  async idle(): Promise<void> {
    while (this.waiting.length > 0 || this.groups.size > 0) {
      if (this.waiting.length > 0) this.startGroup();
      await Promise.allSettled([...this.groups]);
    }
  }

  private startGroup(): void {
    if (this.waiting.length === 0) return;
    const group = this.writeGroup();
    this.groups.add(group);
    void group.finally(() => this.groups.delete(group));
  }

  private async writeGroup(): Promise<void> {
    const group = this.waiting;
    this.waiting = [];
    // An fdatasync failing from here on may have been the one that wrote these bytes back.
    const failures = this.syncFailures;
    try {
      await writeRunsInOneJob(
        this.fd,
        group.map((w) => w.run),
      );
      await this.flushes.request(() => this.flush());
      if (this.syncFailures !== failures) throw this.syncError!;
    } catch (err) {
      for (const w of group) w.reject(err as Error);
      return;
    }
    for (const w of group) w.resolve();
  }

  private async flush(): Promise<void> {
    this.syncs++;
    try {
      await this.sync(this.fd);
    } catch (err) {
      this.syncError = err as Error;
      this.syncFailures++;
      throw err;
    }
  }
}

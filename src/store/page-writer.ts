import { PagerError } from '../errors.js';
import type { PageWrite } from '../vm/store.js';
import type { BackingDevice } from './device.js';
import { timed, type IoObserver } from './io-timing.js';

/** One writePages call: its pages, and the call's stamp in call order (one moment for all of them). */
export interface Batch {
  writes: readonly PageWrite[];
  stamp: number;
}

/**
 * What a cycle hands to the commit step: its batches, and for its i-th page (batches in order,
 * pages in order) the new slot `slots[i]` and checksum `sums[i]`. Parallel arrays, not an object
 * per page: a cycle has up to maxBatchPages pages, and each pass over per-page objects costs.
 */
export interface WrittenCycle {
  batches: readonly Batch[];
  slots: readonly number[];
  sums: Uint32Array;
}

/** The parts of the store a write cycle uses. */
export interface WriteCycleHost {
  readonly device: BackingDevice;
  readonly pageSize: number;
  readonly maxBatchPages: number;
  /** Byte position of slot 0 on the device. */
  readonly dataOffset: number;
  /** Told how long each writev, fdatasync and commit took. */
  readonly observeIo?: IoObserver;
  /** Allocates slots for `count` pages (consuming their reservations), in ascending order. */
  takeSlots(count: number): number[];
  /** A cycle failed before commit: its slots are free again, reservations restored. */
  giveBackSlots(slots: number[]): void;
  /**
   * Commits the cycle's metadata durably (one transaction), while its data flush is in flight;
   * throws if it could not. Exactly one of `synced` and `notSynced` follows a commit.
   */
  commit(cycle: WrittenCycle): void;
  /** The committed cycle's data flush succeeded: the cycle is complete. */
  synced(): void;
  /** The committed cycle's data flush failed: undo the commit. */
  notSynced(): void;
  /** Called when a cycle failed (for logging and the store's failure policy). */
  failed(stage: 'write' | 'datasync' | 'commit', error: unknown): void;
}

interface Waiter {
  batch: Batch;
  captured: () => void;
  complete: () => void;
  reject: (err: Error) => void;
}

/** Most buffers in one writev call (Linux IOV_MAX is 1024). */
const MAX_IOVECS = 1024;

/**
 * The page-out path: batches of page-outs queue here and are written in cycles, one at a time
 * (group commit). A cycle takes every batch queued so far (up to maxBatchPages), gives its pages
 * fresh slots (never the slot holding a page's last complete version), writes contiguous runs
 * with positional writev, all runs in flight at once, then one fdatasync and one metadata
 * transaction at the same time. Only when both succeeded are its batches complete. Cycles never
 * overlap, so a failed fdatasync is charged to exactly the batches that wrote before it, and
 * never retried and trusted.
 */
export class PageWriter {
  private readonly queue: Waiter[] = [];
  private running = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly host: WriteCycleHost) {}

  submit(batch: Batch): { captured: Promise<void>; complete: Promise<void> } {
    let waiter!: Waiter;
    const captured = new Promise<void>((resolve) => {
      waiter = { batch, captured: resolve, complete: () => {}, reject: () => {} };
    });
    const complete = new Promise<void>((resolve, reject) => {
      waiter.complete = resolve;
      waiter.reject = reject;
    });
    this.queue.push(waiter);
    if (!this.running) {
      this.running = true;
      setImmediate(() => void this.drain());
    }
    return { captured, complete };
  }

  /** Resolves once no page-out is queued or being written. */
  idle(): Promise<void> {
    return this.running ? new Promise((resolve) => this.idleWaiters.push(resolve)) : Promise.resolve();
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const cycle: Waiter[] = [];
      let pages = 0;
      while (this.queue.length > 0 && (cycle.length === 0 || pages + this.queue[0].batch.writes.length <= this.host.maxBatchPages)) {
        const w = this.queue.shift()!;
        cycle.push(w);
        pages += w.batch.writes.length;
      }
      await this.runCycle(cycle);
    }
    this.running = false;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private async runCycle(cycle: Waiter[]): Promise<void> {
    const host = this.host;
    const batches = cycle.map((w) => w.batch);
    const writes = batches.length === 1 ? batches[0].writes : batches.flatMap((b) => b.writes);
    const slots = host.takeSlots(writes.length);
    const sums = new Uint32Array(writes.length);
    const fail = (stage: 'write' | 'datasync' | 'commit', error: unknown, giveBack = true): void => {
      if (giveBack) host.giveBackSlots(slots); // else notSynced() has freed them
      host.failed(stage, error);
      const err = new PagerError('page-out-failed', `page-out ${stage} failed: ${(error as Error)?.message ?? String(error)}`);
      for (const w of cycle) {
        w.captured();
        w.reject(err);
      }
    };

    // The device sums each page as it writes it, in the thread pool. Pages are pinned until
    // captured: their bytes cannot change under the checksum or the write.
    const writing = this.runs(slots).map(({ position, first, end }) =>
      timed('writev', host.observeIo, () => host.device.writev(writes.slice(first, end).map((w) => w.data), position, sums.subarray(first, end))),
    );
    const results = await Promise.allSettled(writing);
    for (const w of cycle) w.captured();
    const writeError = results.find((r) => r.status === 'rejected');
    if (writeError !== undefined) return fail('write', (writeError as PromiseRejectedResult).reason);
    // The data flush (in the thread pool) and the metadata commit (here, with its own WAL sync) run
    // at once: one sync's wait instead of two in a row. Until the flush is known good the commit
    // keeps the pages' old slots, and says how to go back (see UnsyncedPageouts).
    const [flushed, committed] = await Promise.allSettled([
      timed('datasync', host.observeIo, () => host.device.datasync()),
      timed('commit', host.observeIo, () => host.commit({ batches, slots, sums })),
    ]);
    if (committed.status === 'rejected') return fail('commit', committed.reason);
    if (flushed.status === 'rejected') {
      host.notSynced();
      return fail('datasync', flushed.reason, false);
    }
    host.synced();
    for (const w of cycle) w.complete();
  }

  /** Groups pages with consecutive slots into writev calls: [first, end) of the cycle's pages (takeSlots answers ascending slots). */
  private runs(slots: readonly number[]): { position: number; first: number; end: number }[] {
    const { pageSize, dataOffset } = this.host;
    const runs: { position: number; first: number; end: number }[] = [];
    for (let i = 0; i < slots.length; i++) {
      const last = runs[runs.length - 1];
      if (i > 0 && slots[i] === slots[i - 1] + 1 && last.end - last.first < MAX_IOVECS) last.end++;
      else runs.push({ position: dataOffset + slots[i] * pageSize, first: i, end: i + 1 });
    }
    return runs;
  }
}

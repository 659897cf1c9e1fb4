import { PagerError } from '../errors.js';
import type { PageWrite } from '../vm/store.js';
import type { BackingDevice, WriteRun } from './device.js';
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
  /** The cycle's number, as its record on the device says (cycle-record.ts). */
  number: number;
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
  /** Resolves true once page-outs may take slots (the page map is checked), false if they never may. */
  writable(): Promise<boolean>;
  /**
   * Numbers a cycle being written, once the commit before it has settled, and answers the record
   * written with its data: that of the last cycle committed before it (cycle-record.ts: a record
   * trails its commit), once that commit is durable (rejects if it cannot be made so).
   */
  startCycle(): Promise<{ number: number; position: number; bytes: Uint8Array }>;
  /** A cycle failed before commit: its slots are free again, reservations restored. */
  giveBackSlots(slots: readonly number[]): void;
  /**
   * Commits the cycle's metadata (one transaction), while its data flush is in flight; rejects if
   * it could not (nothing changed). Resolves once the commit is durable, to true; to false if it
   * could not be made durable (then it is undone as for a failed flush). Exactly one of `synced`
   * and `notSynced` follows a commit.
   */
  commit(cycle: WrittenCycle): Promise<boolean>;
  /** The committed cycle's data flush succeeded: the cycle is complete. */
  synced(): void;
  /** The committed cycle's data flush failed: undo the commit. */
  notSynced(): void;
  /** Called when a cycle failed (for logging and the store's failure policy). */
  failed(stage: 'write' | 'datasync' | 'commit', error: unknown): void;
  /**
   * The writer itself threw (a bug): every batch it held has been failed. The host must not
   * trust the store any more; the error is thrown again on the next tick, to end the process.
   */
  crashed(error: unknown): void;
}

interface Waiter {
  batch: Batch;
  captured: () => void;
  complete: () => void;
  reject: (err: Error) => void;
}

/**
 * Most pages in one writev call: 1 MiB of 4 KiB pages. A cycle's slots are mostly one run; split,
 * its summing and copying spread over the thread pool's threads instead of one (1,000 pages:
 * 3.5 ms on one thread). Below Linux's IOV_MAX (1024).
 */
const PAGES_PER_WRITEV = 256;

/**
 * Cycles of at most this many pages go in one job in the thread pool (their writes, then the
 * fdatasync), their checksums taken on the event loop (~0.7 µs a page) so the commit starts with
 * the writes, not after them. A hand-off to the pool and back costs tens of µs of wake-ups on a
 * VM; a small cycle (a flush of a few pages) would otherwise pay three in a row before its commit.
 */
export const SMALL_CYCLE_PAGES = 64;

/** A cycle whose pages are written, on its way to its flush and commit. */
interface WrittenState {
  waiters: Waiter[];
  cycle: WrittenCycle;
}

/**
 * The page-out path: batches of page-outs queue here and are written in cycles (group commit).
 * A cycle takes every batch queued so far (up to maxBatchPages), gives its pages fresh slots
 * (never the slot holding a page's last complete version), and writes contiguous runs with
 * positional writev, all runs in flight at once; then one fdatasync and one metadata transaction
 * at the same time. Only when both succeeded are its batches complete.
 *
 * Cycles overlap by one stage: the next cycle's writes run while this one flushes and commits
 * (the device is otherwise idle while it syncs), but flushes and commits run one cycle at a time,
 * in order. A small cycle (SMALL_CYCLE_PAGES) overlaps none: it starts once the cycle before it
 * has settled and settles before the next one starts. A failed fdatasync is charged to every
 * batch that wrote before it returned: its own cycle's and the next one's, which may have been
 * written back (and lost) by it; Linux reports a writeback error to one fdatasync only, so the
 * next one's own flush could not be trusted. A failed flush is never retried and trusted.
 */
export class PageWriter {
  private readonly queue: Waiter[] = [];
  /** Batches taken from the queue and not yet settled (being written, flushed or committed). */
  private readonly active = new Set<Waiter>();
  private running = false;
  private idleWaiters: (() => void)[] = [];
  private awaitingCheck = false;
  /** When a cycle last settled, or the writer last went idle (performance.now() ms). */
  private lastProgressMs = performance.now();
  /** Set while page-outs are held (a backup): no cycle starts; batches submitted wait in the queue. */
  private hold: { released: Promise<void>; settled: () => void } | undefined;

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
      this.lastProgressMs = performance.now();
      setImmediate(() => this.drain().catch((err: unknown) => this.crash(err)));
    }
    return { captured, complete };
  }

  /** True while page-outs are queued or being written. */
  get busy(): boolean {
    return this.running;
  }

  /** Resolves once no page-out is queued or being written. */
  idle(): Promise<void> {
    return this.running ? new Promise((resolve) => this.idleWaiters.push(resolve)) : Promise.resolve();
  }

  /** True while the writer is idle, held, or has settled a cycle within the last `withinMs` (the watchdog asks). */
  progressing(withinMs: number): boolean {
    return !this.running || this.awaitingCheck || this.hold !== undefined || performance.now() - this.lastProgressMs < withinMs;
  }

  /**
   * Holds page-outs: no cycle starts until the answered release is called. Resolves once the
   * cycles already started have settled (written, flushed and committed): from then until the
   * release no slot is written, and the page map maps no new slot.
   */
  async pause(): Promise<() => void> {
    if (this.hold !== undefined) throw new PagerError('backup-in-progress');
    let release!: () => void;
    let settled!: () => void;
    const held = new Promise<void>((resolve) => (settled = resolve));
    this.hold = { released: new Promise<void>((resolve) => (release = resolve)), settled };
    if (!this.running) settled();
    await held;
    return () => {
      this.hold = undefined;
      release();
    };
  }

  /** The drain loop threw: no batch may be left pending, so every one it held fails. */
  private crash(error: unknown): void {
    this.failQueued(new PagerError('store-failed', `the page writer failed: ${(error as Error)?.message ?? String(error)}`));
    this.finish();
    this.host.crashed(error);
  }

  /** Fails every batch held, queued or being written. */
  private failQueued(err: PagerError): void {
    for (const w of [...this.active, ...this.queue.splice(0)]) {
      w.captured();
      w.reject(err);
    }
    this.active.clear();
  }

  private finish(): void {
    this.running = false;
    this.hold?.settled();
    this.lastProgressMs = performance.now();
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private async drain(): Promise<void> {
    /** The previous cycle's flush and commit: resolves to whether its fdatasync succeeded. */
    let flushing: Promise<boolean> = Promise.resolve(true);
    this.awaitingCheck = true; // waiting for the store's check is no stall (the watchdog asks)
    const writable = await this.host.writable();
    this.awaitingCheck = false;
    this.lastProgressMs = performance.now();
    if (!writable) {
      this.failQueued(new PagerError('store-failed', 'the store may not take page-outs (its metadata failed its check, or it closed first)'));
      return this.finish();
    }
    for (;;) {
      const hold = this.hold;
      if (hold !== undefined) {
        await flushing; // its outcome is still charged to the next cycle, after the release
        hold.settled();
        await hold.released;
        continue;
      }
      if (this.queue.length === 0) {
        await flushing; // batches submitted meanwhile (as its completions are answered) go on
        if (this.queue.length === 0) break;
      }
      const { waiters, pages } = this.nextCycle();
      if (pages <= SMALL_CYCLE_PAGES) {
        // Its writes start after the last fdatasync returned, and the next cycle's after its own.
        await flushing;
        await this.writeAndFlush(waiters);
        flushing = Promise.resolve(true);
        continue;
      }
      const written = await this.write(waiters);
      const previousFlushed = await flushing;
      if (written === undefined) continue;
      if (!previousFlushed) {
        this.fail(written, 'datasync', new Error('the fdatasync of the page-out written before it failed while it was being written'));
        // Charged once: the next cycle's own fdatasync reports anything still pending.
        flushing = Promise.resolve(true);
        continue;
      }
      flushing = this.flush(written);
      flushing.catch(() => undefined); // awaited (and any throw met) on the next turn of this loop
    }
    this.finish();
  }

  private nextCycle(): { waiters: Waiter[]; pages: number } {
    const waiters: Waiter[] = [];
    let pages = 0;
    while (this.queue.length > 0 && (waiters.length === 0 || pages + this.queue[0].batch.writes.length <= this.host.maxBatchPages)) {
      const w = this.queue.shift()!;
      this.active.add(w);
      waiters.push(w);
      pages += w.batch.writes.length;
    }
    return { waiters, pages };
  }

  /** A cycle's batches, its pages in order, and fresh slots for them. */
  private slotted(waiters: readonly Waiter[]): { batches: Batch[]; writes: readonly PageWrite[]; slots: number[] } {
    const batches = waiters.map((w) => w.batch);
    const writes = batches.length === 1 ? batches[0].writes : batches.flatMap((b) => b.writes);
    return { batches, writes, slots: this.host.takeSlots(writes.length) };
  }

  /** Writes a cycle's pages to fresh slots; answers it written, or undefined if it failed. */
  private async write(waiters: Waiter[]): Promise<WrittenState | undefined> {
    const host = this.host;
    const { batches, writes, slots } = this.slotted(waiters);
    const sums = new Uint32Array(writes.length);
    const record = host.startCycle();
    // The device sums each page as it writes it, in the thread pool. Pages are pinned until
    // captured: their bytes cannot change under the checksum or the write.
    const results = await Promise.allSettled([
      ...this.runs(slots, writes).map(({ position, first, end, buffers }) =>
        timed('writev', host.observeIo, () => host.device.writev(buffers, position, sums.subarray(first, end))),
      ),
      record.then(({ bytes, position }) => host.device.writev([bytes], position)),
    ]);
    for (const w of waiters) w.captured();
    const writeError = results.find((r) => r.status === 'rejected');
    // A record that could not be had failed its write too: the number is not used then.
    const number = writeError === undefined ? (await record).number : 0;
    const written: WrittenState = { waiters, cycle: { batches, slots, sums, number } };
    if (writeError === undefined) return written;
    this.fail(written, 'write', (writeError as PromiseRejectedResult).reason);
    return undefined;
  }

  /**
   * The data flush and the metadata commit (its WAL sync in the thread pool too) at once: one
   * sync's wait instead of two in a row. Until the flush is known good the commit keeps the pages'
   * old slots, and says how to go back (see UnsyncedPageouts). Resolves to whether the data's
   * fdatasync succeeded.
   */
  private async flush(written: WrittenState): Promise<boolean> {
    const host = this.host;
    const [flushed, committed] = await Promise.allSettled([
      timed('datasync', host.observeIo, () => host.device.datasync()),
      timed('commit', host.observeIo, () => host.commit(written.cycle)),
    ]);
    return this.flushed(written, flushed, committed);
  }

  /**
   * A small cycle: its pages' checksums taken now, then its writes and fdatasync in one job while
   * its metadata commits (as flush() does, from the start). Its frames are unpinned when the job ends.
   */
  private async writeAndFlush(waiters: Waiter[]): Promise<void> {
    const host = this.host;
    const { batches, writes, slots } = this.slotted(waiters);
    const sums = new Uint32Array(writes.length + 1); // the last: the record's, unused
    let record: { number: number; position: number; bytes: Uint8Array };
    try {
      record = await host.startCycle();
    } catch (err) {
      return this.fail({ waiters, cycle: { batches, slots, sums, number: 0 } }, 'write', err);
    }
    const runs: WriteRun[] = this.runs(slots, writes);
    runs.push({ position: record.position, buffers: [record.bytes] });
    const written: WrittenState = { waiters, cycle: { batches, slots, sums, number: record.number } };
    // Sets the sums before it returns; timed as the flush (the writes are page-cache copies, the fdatasync is the wait).
    const synced = timed('datasync', host.observeIo, () => host.device.writeAndSync(runs, sums));
    void synced.finally(() => waiters.forEach((w) => w.captured())).catch(() => undefined);
    const [flushed, committed] = await Promise.allSettled([synced, timed('commit', host.observeIo, () => host.commit(written.cycle))]);
    const writeFailed = flushed.status === 'rejected' && (flushed.reason as { syscall?: string } | undefined)?.syscall === 'pwritev';
    this.flushed(written, flushed, committed, writeFailed ? 'write' : 'datasync');
  }

  /** Settles a cycle by how its data flush (`stage`: what failed, if it did) and its commit ended; answers whether the flush succeeded. */
  private flushed(written: WrittenState, flushed: PromiseSettledResult<void>, committed: PromiseSettledResult<boolean>, stage: 'write' | 'datasync' = 'datasync'): boolean {
    const host = this.host;
    if (committed.status === 'rejected') {
      this.fail(written, 'commit', committed.reason);
    } else if (flushed.status === 'rejected') {
      host.notSynced();
      this.fail(written, stage, flushed.reason, false);
    } else if (!committed.value) {
      host.notSynced();
      this.fail(written, 'commit', new Error('the metadata could not be synced'), false);
    } else {
      host.synced();
      for (const w of written.waiters) this.settled(w).complete();
    }
    this.lastProgressMs = performance.now();
    return flushed.status === 'fulfilled';
  }

  /** A cycle failed: its batches are told, its slots (unless already rolled back) are free again. */
  private fail({ waiters, cycle }: WrittenState, stage: 'write' | 'datasync' | 'commit', error: unknown, giveBack = true): void {
    if (giveBack) this.host.giveBackSlots(cycle.slots); // else notSynced() has freed them
    this.host.failed(stage, error);
    const err = new PagerError('page-out-failed', `page-out ${stage} failed: ${(error as Error)?.message ?? String(error)}`);
    this.lastProgressMs = performance.now(); // settled, if not well: the writer is not stuck
    for (const w of waiters) {
      w.captured();
      this.settled(w).reject(err);
    }
  }

  private settled(w: Waiter): Waiter {
    this.active.delete(w);
    return w;
  }

  /**
   * Groups pages with consecutive slots into writev calls (takeSlots answers ascending slots): each
   * run's position, its pages [first, end) of the cycle, and their bytes.
   */
  private runs(slots: readonly number[], writes: readonly PageWrite[]): { position: number; first: number; end: number; buffers: Uint8Array[] }[] {
    const { pageSize, dataOffset } = this.host;
    const runs: { position: number; first: number; end: number; buffers: Uint8Array[] }[] = [];
    for (let i = 0; i < slots.length; i++) {
      const last = runs[runs.length - 1];
      if (i > 0 && slots[i] === slots[i - 1] + 1 && last.end - last.first < PAGES_PER_WRITEV) {
        last.end++;
        last.buffers.push(writes[i].data);
      } else {
        runs.push({ position: dataOffset + slots[i] * pageSize, first: i, end: i + 1, buffers: [writes[i].data] });
      }
    }
    return runs;
  }
}


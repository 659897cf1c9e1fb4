import { Verdict } from './clock.js';
import { FrameFlag } from './frame-layout.js';
import { PageState } from './page-state.js';
import type { Segment } from './segment.js';
import type { PageWrite } from './store.js';
import type { Vmm } from './vmm.js';

/** One page of a batch in flight. */
interface InFlight {
  frame: number;
  segment: Segment;
  pno: number;
  seq: number;
}

/** Bounds of the laundry's back-off after failed page-outs (ms). */
const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 5000;

/** Write-behind scans the limited segments' pages at most this often (ms), however many writers wait. */
const WRITE_BEHIND_EVERY_MS = 10;

/** Frames the daemon looks at per turn of the event loop, so client calls are never held up long. */
const SCAN_PER_TURN = 4096;

/**
 * Page-out: starting batches of page-outs, settling their completion, and the pageout daemon that
 * keeps the free list between the watermarks (the clock hand steals clean pages and launders
 * modified ones).
 */
export class Pageout {
  private scheduled = false;
  /**
   * Pagers (BackingStore.pagerOf) whose last page-out failed: the daemon launders none of their
   * pages until `until` (ms), the wait doubling with each failure. Other pagers' pages go on
   * being laundered: one failing file system must not stop the laundry of the rest.
   */
  private readonly backoff = new Map<number, { ms: number; until: number }>();
  /** No pass before this (ms): the last found only pages of pagers backing off. */
  private quietUntil = 0;
  private lastWriteBehind = -Infinity;
  private writeBehindLater = false;

  constructor(private readonly vmm: Vmm) {}

  /**
   * Starts page-out of MODIFIED frames, as one batch. Each page takes its segment's next I/O
   * sequence number, or `seqs[i]` when one was reserved earlier (a queued forced page-out).
   * The frames move to PAGE_OUT and are pinned until the store has captured their bytes.
   */
  start(frames: readonly number[], seqs?: readonly number[]): void {
    const pagerOf = this.vmm.store.pagerOf?.bind(this.vmm.store);
    if (pagerOf === undefined || frames.length === 0) return this.startBatch(frames, seqs);
    // One batch per pager (a client file system's segments page through their own); nearly every
    // batch has one pager only, and goes as it is.
    const t = this.vmm.pool.table;
    if (onePager(frames, t.vmid, pagerOf)) return this.startBatch(frames, seqs);
    const groups = new Map<number, { frames: number[]; seqs: number[] | undefined }>();
    frames.forEach((f, i) => {
      const pager = pagerOf(t.vmid[f]);
      let group = groups.get(pager);
      if (group === undefined) groups.set(pager, (group = { frames: [], seqs: seqs === undefined ? undefined : [] }));
      group.frames.push(f);
      group.seqs?.push(seqs![i]);
    });
    for (const group of groups.values()) this.startBatch(group.frames, group.seqs);
  }

  private startBatch(frames: readonly number[], seqs?: readonly number[]): void {
    if (frames.length === 0) return;
    const vmm = this.vmm;
    const t = vmm.pool.table;
    // A pager that sends each request as it is made starts on the first batch while the rest are prepared.
    const most = vmm.store.batchPages?.(t.vmid[frames[0]]) ?? Infinity;
    if (frames.length > most) {
      for (let i = 0; i < frames.length; i += most) this.startBatch(frames.slice(i, i + most), seqs?.slice(i, i + most));
      return;
    }
    const now = vmm.now();
    const batch: InFlight[] = [];
    const writes: PageWrite[] = [];
    let segment: Segment | undefined;
    for (let i = 0; i < frames.length; i++) {
      const f = frames[i];
      // A batch's pages are nearly always one segment's: looked up once per run of them.
      if (segment?.vmid !== t.vmid[f]) segment = vmm.segments.get(t.vmid[f]);
      if (segment === undefined) throw new Error(`page-out of frame ${f} of no live segment`);
      vmm.transition(f, PageState.PAGE_OUT);
      t.pins[f]++;
      t.pageOutStartedMs[f] = now;
      const pno = t.pno[f];
      batch.push({ frame: f, segment, pno, seq: seqs?.[i] ?? segment.io.next() });
      writes.push({ vmid: segment.vmid, pno, data: vmm.pool.frameBytes(f), frame: f });
    }
    vmm.counters.pageOuts += batch.length;
    const ticket = vmm.store.writePages(writes);
    // Settled only after unpinned, whatever order the store's promises settle in: settling may free a frame.
    const unpinned = ticket.captured.then(() => this.unpin(batch));
    ticket.complete.then(
      () => unpinned.then(() => this.settle(batch, now, undefined)),
      (err: unknown) => unpinned.then(() => this.settle(batch, now, err instanceof Error ? err : new Error(String(err)))),
    );
  }

  /**
   * Queues a forced page-out behind the one in flight on a PAGE_OUT frame that was modified again.
   * Its sequence number is taken now, so a vms_iowait called after this waits for it too.
   */
  queueAgain(f: number, segment: Segment): void {
    const t = this.vmm.pool.table;
    if ((t.flags[f] & FrameFlag.PAGEOUT_AGAIN) !== 0) return;
    t.flags[f] |= FrameFlag.PAGEOUT_AGAIN;
    t.queuedSeq[f] = segment.io.next();
  }

  /**
   * Write-behind for writers waiting for room (BackingStore.mayModify): starts page-out of every
   * modified page of the segments at the store's limit that can be paged out (pages already being
   * written out are not: a scan starts only what came since), in batches of pageoutBatchPages
   * (room comes back batch by batch).
   */
  writeBehind(): void {
    const vmm = this.vmm;
    // Waiters call this at each look: a scan at most every WRITE_BEHIND_EVERY_MS, and the waiters
    // asked to look again once the next may run.
    const now = vmm.now();
    if (now - this.lastWriteBehind < WRITE_BEHIND_EVERY_MS) {
      if (!this.writeBehindLater) {
        this.writeBehindLater = true;
        setTimeout(() => {
          this.writeBehindLater = false;
          vmm.roomMayHaveChanged();
        }, WRITE_BEHIND_EVERY_MS).unref();
      }
      return;
    }
    this.lastWriteBehind = now;
    const t = vmm.pool.table;
    const frames: number[] = [];
    for (const seg of vmm.segments.values()) {
      if (vmm.mayModify(seg) || vmm.store.mayPageOut?.(seg.vmid) === false || this.backingOff(seg.vmid)) continue;
      seg.pages.forEachInRange(0, seg.pageCount, (_pno, f) => {
        if (t.state[f] === PageState.MODIFIED) frames.push(f);
      });
    }
    for (let i = 0; i < frames.length; i += vmm.options.pageoutBatchPages) this.start(frames.slice(i, i + vmm.options.pageoutBatchPages));
  }

  private unpin(batch: readonly InFlight[]): void {
    for (const { frame } of batch) this.vmm.unpinFrame(frame);
  }

  /**
   * Settles a batch. On success a page becomes CLEAN (or MODIFIED again if written to meanwhile)
   * and the segment's modified bit is set; on failure the page stays MODIFIED and resident, its
   * frame the only good copy, and the segment's I/O level records the error. Discarded frames are
   * freed either way. Queued forced page-outs start as one new batch.
   */
  private settle(batch: readonly InFlight[], startedMs: number, error: Error | undefined): void {
    const vmm = this.vmm;
    const t = vmm.pool.table;
    const ok = error === undefined;
    if (!ok) vmm.counters.pageOutFailures += batch.length;
    this.backOff(this.pagerOf(batch[0].segment.vmid), ok, startedMs);
    if (!ok) for (const segment of new Set(batch.map((p) => p.segment))) vmm.pageOutFailed(segment, error);
    const again: number[] = [];
    const againSeqs: number[] = [];
    const unlinked: number[] = [];
    for (const { frame: f, segment, seq } of batch) {
      segment.io.complete(seq);
      const flags = t.flags[f];
      if ((flags & FrameFlag.DISCARD) !== 0) {
        // Unlinked by a release or delete while in flight. A failed batch gave its reservation back.
        if (!ok) vmm.store.unreserveSlots(1, segment.vmid);
        unlinked.push(f);
        continue;
      }
      if (ok) segment.pagedOutSinceQuery = true;
      const remodified = (flags & FrameFlag.REMODIFIED) !== 0;
      t.flags[f] = flags & ~FrameFlag.REMODIFIED;
      if (ok && !remodified) {
        vmm.transition(f, PageState.CLEAN);
        if ((flags & FrameFlag.FREE_AT_IO_DONE) !== 0) {
          vmm.unlinkClean(f);
          unlinked.push(f);
          continue;
        }
      } else {
        vmm.transition(f, PageState.MODIFIED);
        // A failed batch gave back its reservation; a page modified again holds one already.
        if (!ok && remodified) vmm.store.unreserveSlots(1, segment.vmid);
        // Freed at completion only after a successful write of its latest bytes: a forced page-out
        // queued behind (flush) keeps the mark; otherwise the page is hot again and back in the
        // clock's hands.
        if (!ok || (flags & FrameFlag.PAGEOUT_AGAIN) === 0) t.flags[f] &= ~FrameFlag.FREE_AT_IO_DONE;
      }
      if ((flags & FrameFlag.PAGEOUT_AGAIN) !== 0) {
        t.flags[f] &= ~FrameFlag.PAGEOUT_AGAIN;
        const queued = t.queuedSeq[f];
        t.queuedSeq[f] = 0;
        if (t.state[f] === PageState.MODIFIED) {
          again.push(f);
          againSeqs.push(queued);
        } else {
          segment.io.complete(queued); // nothing left to write: the queued page-out is moot
        }
      }
      vmm.frameEvents.wake(f);
    }
    vmm.freeInOrder(unlinked);
    this.start(again, againSeqs);
    vmm.roomMayHaveChanged();
    this.kick();
  }

  /** Schedules a pageout pass if the free list is below the low watermark. */
  kick(): void {
    if (this.scheduled || this.vmm.pool.freeCount >= this.vmm.options.minFree || this.vmm.now() < this.quietUntil) return;
    this.scheduled = true;
    setImmediate(() => this.pass());
  }

  private pagerOf(vmid: number): number {
    return this.vmm.store.pagerOf?.(vmid) ?? 0;
  }

  /** A failing pager must not be hammered by the laundry: it backs off, doubling, until a success; the laundry looks again when the wait ends. */
  private backOff(pager: number, ok: boolean, startedMs: number): void {
    if (ok) {
      // Only a page-out begun after the failure (until - ms) shows the pager recovered: a batch sent
      // beside the failed one (a large range's page-out goes in several) may succeed where it failed.
      const b = this.backoff.get(pager);
      if (b === undefined || startedMs > b.until - b.ms) this.backoff.delete(pager);
      return;
    }
    const now = this.vmm.now();
    // At most a quarter of memory.allocTimeoutMs: a writer waiting for room sees the pager tried
    // again several times before it gives up, so a file system that recovered is found in time.
    const most = Math.max(MIN_BACKOFF_MS, Math.min(MAX_BACKOFF_MS, this.vmm.options.allocTimeoutMs / 4));
    const ms = Math.min(most, Math.max(MIN_BACKOFF_MS, (this.backoff.get(pager)?.ms ?? 0) * 2));
    this.backoff.set(pager, { ms, until: now + ms });
    // Pagers that failed long ago (their segments deleted since, maybe) start afresh.
    for (const [other, b] of this.backoff) if (b.until < now - MAX_BACKOFF_MS) this.backoff.delete(other);
    setTimeout(() => {
      this.kick();
      this.vmm.roomMayHaveChanged(); // writers waiting for room may write behind to it again
    }, ms).unref();
  }

  /** The laundry, and write-behind, leave the pages of a pager backing off. */
  private backingOff(vmid: number): boolean {
    if (this.backoff.size === 0) return false;
    const b = this.backoff.get(this.pagerOf(vmid));
    return b !== undefined && this.vmm.now() < b.until;
  }

  /**
   * One pass of the pageout daemon: turns the clock hand until the free list reaches the high
   * watermark, stealing clean pages and laundering modified ones (marked to be freed when their
   * page-out completes). Yields to the event loop every SCAN_PER_TURN frames; the frames in
   * laundry are counted once per pass chain and carried along.
   */
  private pass(budget = 2 * this.vmm.pool.count, laundering = this.countLaundering(), progress = 0, backedOff = 0): void {
    this.scheduled = false;
    const vmm = this.vmm;
    const t = vmm.pool.table;
    const target = vmm.options.maxFree;
    const launder: number[] = [];
    const startLaundry = (): void => {
      laundering += launder.length;
      this.start(launder.splice(0));
    };
    let scanned = 0;
    while (vmm.pool.freeCount + laundering + launder.length < target && scanned < Math.min(budget, SCAN_PER_TURN)) {
      const { frame, verdict } = vmm.clock.advance();
      scanned++;
      if (verdict === Verdict.STEAL) {
        vmm.counters.steals++;
        progress++;
        vmm.evictClean(frame);
      } else if (verdict === Verdict.LAUNDER && !vmm.store.failed) {
        // A failed store is not retried (SPEC §3: page-outs answer EIO at once): only clean pages
        // are stolen until it is reopened.
        if (this.backingOff(t.vmid[frame])) {
          backedOff++;
          continue;
        }
        progress++;
        t.flags[frame] |= FrameFlag.FREE_AT_IO_DONE;
        launder.push(frame);
        if (launder.length >= vmm.options.pageoutBatchPages) startLaundry();
      }
    }
    startLaundry();
    const remaining = budget - scanned;
    if (vmm.pool.freeCount + laundering < target && remaining > 0) {
      this.scheduled = true;
      setImmediate(() => this.pass(remaining, laundering, progress, backedOff));
    } else if (progress === 0 && backedOff > 0) {
      // Only pages of pagers backing off: no pass for a while (each ends with a kick), so kicks of
      // allocations meanwhile do not scan the pool again and again; a short while, as another
      // pager's pages may be modified meanwhile.
      this.quietUntil = vmm.now() + MIN_BACKOFF_MS;
    }
  }

  /** Frames being laundered or flushed now: they will be free when their page-outs complete. */
  private countLaundering(): number {
    const t = this.vmm.pool.table;
    let n = 0;
    for (let f = 0; f < this.vmm.pool.count; f++) if ((t.flags[f] & FrameFlag.FREE_AT_IO_DONE) !== 0 && t.state[f] === PageState.PAGE_OUT) n++;
    return n;
  }
}

/** True if every frame's segment pages through the same pager (looked up once per run of one segment's frames). */
function onePager(frames: readonly number[], vmids: Uint32Array, pagerOf: (vmid: number) => number): boolean {
  let vmid = vmids[frames[0]];
  const pager = pagerOf(vmid);
  for (const f of frames) {
    if (vmids[f] === vmid) continue;
    vmid = vmids[f];
    if (pagerOf(vmid) !== pager) return false;
  }
  return true;
}

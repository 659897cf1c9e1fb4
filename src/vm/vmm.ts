import { copyBytes } from '../copy-bytes.js';
import { PagerError } from '../errors.js';
import { Clock } from './clock.js';
import type { ClientContext } from './context.js';
import { FrameFlag } from './frame-layout.js';
import { FramePool } from './frame-pool.js';
import { IN_IO, IllegalTransitionError, PageState, isLegalTransition } from './page-state.js';
import { Pageout } from './pageout.js';
import { Segment } from './segment.js';
import type { BackingStore } from './store.js';
import { WaitQueue } from './wait-queue.js';

/** The engine's tunables. */
export interface VmmOptions {
  /** Number of page frames in the pool. */
  frames: number;
  /** Pageout starts when fewer frames than this are free (AIX minfree). */
  minFree: number;
  /** Pageout stops once this many frames are free (AIX maxfree). */
  maxFree: number;
  /** vm_write without force skips a modified page whose last page-out started less than this ago (ms). */
  writebackMinAgeMs: number;
  /** How long a fault waits for a frame before answering ENOMEM (ms). */
  allocTimeoutMs: number;
  /** Most pages the pageout daemon sends to the store in one batch. */
  pageoutBatchPages: number;
  /** Most frames one uid may hold pinned (pages of its large-page segments); default the whole pool. */
  maxPinnedPerUid?: number;
  /** The clock the engine reads (ms); tests pass their own. */
  now?: () => number;
  /** Frames in memory other processes can map (FramePool.offer): the daemon's, when it offers shared frames. */
  sharedFrames?: boolean;
}

/** Counters since start (the daemon exports them as metrics). */
export interface VmmCounters {
  hits: number;
  misses: number;
  pageIns: number;
  pageOuts: number;
  pageOutFailures: number;
  releases: number;
  steals: number;
}

const { ABSENT, CLEAN, MODIFIED, PAGE_OUT } = PageState;
/** Keys of the pool's waiters: a free frame, room for a modified page (BackingStore.mayModify). */
const FREE_WAIT = 'free';
const ROOM_WAIT = 'room';

/**
 * The virtual memory manager core: the frame pool, the segments, and the primitives the fault
 * path, the pageout daemon and the services are built from. Everything runs on the main thread;
 * the only suspension points are awaits on I/O and on the wait queues, so each primitive below
 * runs to completion without interference.
 */
export class Vmm {
  readonly pool: FramePool;
  readonly store: BackingStore;
  readonly options: Required<VmmOptions>;
  readonly segments = new Map<number, Segment>();
  /** Woken whenever a frame's state, pins or flags change in a way a waiter may care about. */
  readonly frameEvents = new WaitQueue<number>();
  readonly clock: Clock;
  readonly pageout: Pageout;
  readonly counters: VmmCounters = { hits: 0, misses: 0, pageIns: 0, pageOuts: 0, pageOutFailures: 0, releases: 0, steals: 0 };
  /** Live clients: each hears every page-out failure once (SPEC §4). Added and removed by VmServices. */
  readonly clients = new Set<ClientContext>();
  private readonly poolWaiters = new WaitQueue<typeof FREE_WAIT | typeof ROOM_WAIT>();
  /** Frames pinned per uid (pages of large-page segments, charged to the segment's owner). */
  private readonly pinnedByUid = new Map<number, number>();
  /** Of each frame's pins, those of writes by frame reference whose device failed (orphanFrame). */
  private readonly orphanPins = new Map<number, number>();

  constructor(store: BackingStore, options: VmmOptions) {
    this.store = store;
    this.options = { now: Date.now, maxPinnedPerUid: options.frames, sharedFrames: false, ...options };
    this.pool = new FramePool(store.pageSize, options.frames, { shared: options.sharedFrames });
    this.clock = new Clock(this);
    this.pageout = new Pageout(this);
  }

  /** Builds an engine over a store and loads the store's segments. */
  static async open(store: BackingStore, options: VmmOptions): Promise<Vmm> {
    const vmm = new Vmm(store, options);
    for (const record of await store.loadSegments()) vmm.segments.set(record.vmid, new Segment(record, store.pageSize));
    return vmm;
  }

  get pageSize(): number {
    return this.pool.pageSize;
  }

  now(): number {
    return this.options.now();
  }

  /** Moves frame f to state `to`; an illegal move is a bug and throws naming both states. */
  transition(f: number, to: PageState): void {
    const from = this.pool.table.state[f] as PageState;
    if (!isLegalTransition(from, to)) throw new IllegalTransitionError(f, from, to);
    this.pool.table.state[f] = to;
    if (to === MODIFIED) this.noteModified(f);
  }

  /** Tells the frame's segment its page became modified (Segment.modifiedSinceSync). */
  private noteModified(f: number): void {
    const t = this.pool.table;
    this.segments.get(t.vmid[f])?.noteModified(t.pno[f]);
  }

  /** True if a resident page of `seg` is modified (not yet durable). */
  hasModifiedPages(seg: Segment): boolean {
    let modified = false;
    seg.pages.forEachInRange(0, seg.pageCount, (_pno, f) => {
      modified ||= this.isModified(f);
    });
    return modified;
  }

  /** True if the frame's bytes differ from every page-out started for it. */
  isModified(f: number): boolean {
    const t = this.pool.table;
    return t.state[f] === MODIFIED || (t.state[f] === PAGE_OUT && (t.flags[f] & FrameFlag.REMODIFIED) !== 0);
  }

  /**
   * Marks a resident frame (CLEAN, MODIFIED or PAGE_OUT) as modified, reserving the backing slot
   * its next page-out will need. Throws ENOSPC (no-backing-space) and changes nothing when the
   * store has no room. Large-page frames are never paged out and reserve nothing.
   */
  markModified(f: number): void {
    const t = this.pool.table;
    if (this.isModified(f)) return;
    if ((t.flags[f] & FrameFlag.LOCKED) === 0 && !this.store.reserveSlots(1, t.vmid[f])) throw new PagerError('no-backing-space');
    if (t.state[f] === PAGE_OUT) {
      t.flags[f] |= FrameFlag.REMODIFIED;
      this.noteModified(f);
    } else this.transition(f, MODIFIED);
  }

  /** False while a new modified page of `seg` must wait for page-outs (BackingStore.mayModify). */
  mayModify(seg: Segment): boolean {
    return this.store.mayModify?.(seg.vmid) ?? true;
  }

  /** True if writing the page in frame `f` of `seg` (-1: a page not resident) must first wait for room (roomToModify). */
  mustWaitForRoom(seg: Segment, f: number): boolean {
    return (f < 0 || !this.isModified(f)) && !this.mayModify(seg);
  }

  /**
   * Waits until `seg` may have another modified page. Segments like it are at the store's limit
   * of modified pages: a write-behind of theirs starts (Pageout.writeBehind), and the wait ends as
   * their page-outs complete; ENOMEM (modified-limit) if none made room within allocTimeoutMs
   * (their file systems fail them, are gone, or are that slow).
   */
  async roomToModify(seg: Segment, signal?: AbortSignal): Promise<void> {
    const deadline = this.now() + this.options.allocTimeoutMs;
    while (!this.mayModify(seg)) {
      // Each look: the room an earlier write-behind made may have gone to another writer.
      this.pageout.writeBehind();
      const left = deadline - this.now();
      if (left <= 0 || !(await this.poolWaiters.wait(ROOM_WAIT, left, signal))) {
        if (this.mayModify(seg)) return;
        throw new PagerError('modified-limit', `client segments of uid ${seg.uid} (segment ${seg.vmid}'s owner), or of all uids, hold their share of the pool in modified pages their file systems have not written`);
      }
    }
  }

  /** Gives back the reservation of a page of `seg` that will not be paged out after all: writers waiting for room look again. */
  unreserve(seg: Segment): void {
    this.store.unreserveSlots(1, seg.vmid);
    this.roomMayHaveChanged();
  }

  /** Modified pages were written or discarded: writers waiting for room look again. */
  roomMayHaveChanged(): void {
    this.poolWaiters.wake(ROOM_WAIT);
  }

  /**
   * A page-out of `seg` failed: every live client hears it at its next vms_iowait on the segment
   * (one flag per client and segment, so nothing grows with repeated failures).
   */
  pageOutFailed(seg: Segment, error: Error): void {
    if (seg.deleted) return; // nobody can wait on it any more
    // A client file system's own errno, or its device gone, is what the waiter hears; any other failure is page-out-failed.
    const passed = error instanceof PagerError && (error.reason === 'file-system-error' || error.reason === 'device-gone');
    const failure = passed ? error : new PagerError('page-out-failed', error instanceof PagerError ? error.detail : error.message);
    for (const client of this.clients) {
      if (client.maySee(seg) && !client.unheardFailures.has(seg.vmid)) client.unheardFailures.set(seg.vmid, failure);
    }
  }

  /**
   * Throws ENOMEM (pinned-limit) if a new frame of `seg` would take its owner past
   * maxPinnedPerUid. Only large-page segments pin; call before taking a frame for one.
   */
  checkPinLimit(seg: Segment): void {
    if (!this.mayPin(seg)) throw new PagerError('pinned-limit');
  }

  /** False if a new frame of `seg` would take its owner past maxPinnedPerUid. */
  mayPin(seg: Segment): boolean {
    return !seg.largePages || this.pinnedBy(seg.uid) < this.options.maxPinnedPerUid;
  }

  /** Frames the uid holds pinned now. */
  pinnedBy(uid: number): number {
    return this.pinnedByUid.get(uid) ?? 0;
  }

  private chargePin(seg: Segment, by: 1 | -1): void {
    const n = this.pinnedBy(seg.uid) + by;
    if (n === 0) this.pinnedByUid.delete(seg.uid);
    else this.pinnedByUid.set(seg.uid, n);
  }

  /** Links frame f (taken from the free list) to page `pno` of `seg`. */
  link(seg: Segment, pno: number, f: number): void {
    const t = this.pool.table;
    if (seg.largePages) this.chargePin(seg, 1);
    seg.pages.set(pno, f);
    t.vmid[f] = seg.vmid;
    t.pno[f] = pno;
    t.flags[f] = seg.largePages ? FrameFlag.LOCKED : 0;
    t.pageOutStartedMs[f] = 0;
    t.queuedSeq[f] = 0;
  }

  /** Puts an unlinked frame back on the free list and wakes a waiter for frames. */
  freeFrame(f: number): void {
    const t = this.pool.table;
    if (t.state[f] !== ABSENT) this.transition(f, ABSENT);
    // Still read by a file system whose device failed under it (a write by frame reference): not
    // another page's until it is let go (unpinFrame).
    if (t.pins[f] !== 0) {
      t.flags[f] |= FrameFlag.FREE_WHEN_UNPINNED;
      return;
    }
    this.pool.pushFree(f);
    this.frameEvents.wake(f);
    this.poolWaiters.wake(FREE_WAIT);
  }

  /**
   * Takes a frame without waiting: from the free list, else one the clock hand can steal at once.
   * Answers -1 when neither has one. Kicks the pageout daemon when the free list runs low.
   */
  tryAllocateFrame(): number {
    let f = this.pool.takeFree();
    if (f < 0) f = this.clock.stealOne();
    if (this.pool.freeCount < this.options.minFree) this.pageout.kick();
    return f;
  }

  /** Takes a frame, waiting for the pageout daemon up to allocTimeoutMs; ENOMEM (no-frame) after that. */
  async allocateFrame(signal?: AbortSignal): Promise<number> {
    const deadline = this.now() + this.options.allocTimeoutMs;
    for (;;) {
      const f = this.tryAllocateFrame();
      if (f >= 0) return f;
      this.pageout.kick();
      const left = deadline - this.now();
      if (left <= 0 || !(await this.poolWaiters.wait(FREE_WAIT, left, signal))) {
        // One last look: a frame may have been freed just as the timer fired.
        const last = this.tryAllocateFrame();
        if (last >= 0) return last;
        throw new PagerError('no-frame');
      }
    }
  }

  /**
   * Discards page `pno` of `seg` without writing it: answers its frame, unlinked, for the caller to
   * free, or -1 when it has none or it is under I/O (then it is freed when the I/O completes:
   * DISCARD). A modified page's slot reservation is given back; a forced page-out queued behind
   * one in flight is dropped.
   */
  private discardPage(seg: Segment, pno: number): number {
    const f = seg.pages.get(pno);
    if (f < 0) return -1;
    const t = this.pool.table;
    const state = t.state[f];
    this.unlink(seg, pno);
    if (this.isModified(f) && (t.flags[f] & FrameFlag.LOCKED) === 0) this.unreserve(seg);
    if (IN_IO[state]) {
      if ((t.flags[f] & FrameFlag.PAGEOUT_AGAIN) !== 0) seg.io.complete(t.queuedSeq[f]);
      t.flags[f] = (t.flags[f] & ~(FrameFlag.REMODIFIED | FrameFlag.PAGEOUT_AGAIN | FrameFlag.FREE_AT_IO_DONE)) | FrameFlag.DISCARD;
      t.queuedSeq[f] = 0;
      this.frameEvents.wake(f);
      return -1;
    }
    return f;
  }

  /** Removes page `pno` from its segment's page table (the frame is the caller's to free). */
  unlink(seg: Segment, pno: number): void {
    const f = seg.pages.get(pno);
    seg.pages.delete(pno);
    this.pool.unpublish(f); // readers of shared frames stop trusting it before it is reused
    if (seg.largePages) this.chargePin(seg, -1);
  }

  /** Discards every page of [first, end) that has a frame. */
  discardRange(seg: Segment, first: number, end: number): void {
    const unlinked: number[] = [];
    seg.pages.forEachInRange(first, end, (pno) => {
      const f = this.discardPage(seg, pno);
      if (f >= 0) unlinked.push(f);
    });
    this.freeInOrder(unlinked);
  }

  /**
   * Frees unlinked frames highest first, so the free list hands them out in ascending order: pages
   * made resident one after another next get neighbouring frames (a page-out request of one
   * piece, adjacent memory), not the order of the pages they held.
   */
  freeInOrder(frames: readonly number[]): void {
    const ascending = Uint32Array.from(frames).sort();
    for (let i = ascending.length - 1; i >= 0; i--) this.freeFrame(ascending[i]);
  }

  /** Unlinks a CLEAN frame from its page table; it is left ABSENT, on no list, for the caller. */
  unlinkClean(f: number): void {
    const seg = this.segments.get(this.pool.table.vmid[f]);
    if (seg === undefined) throw new Error(`frame ${f} belongs to no live segment`);
    this.pool.unpublish(f);
    seg.pages.delete(this.pool.table.pno[f]);
    this.transition(f, ABSENT);
    this.frameEvents.wake(f);
  }

  /** Unlinks and frees a CLEAN frame (stolen, flushed or freed after page-out). */
  evictClean(f: number): void {
    this.unlinkClean(f);
    this.freeFrame(f);
  }

  /** Holds frame f's bytes as they are: writers of its page wait (residentFrame) until unpinFrame. */
  pinFrame(f: number): void {
    this.pool.table.pins[f]++;
  }

  unpinFrame(f: number): void {
    const t = this.pool.table;
    t.pins[f]--;
    if (t.pins[f] === 0 && (t.flags[f] & FrameFlag.FREE_WHEN_UNPINNED) !== 0) {
      t.flags[f] &= ~FrameFlag.FREE_WHEN_UNPINNED;
      return this.freeFrame(f);
    }
    this.frameEvents.wake(f);
  }

  /**
   * One of frame f's pins is now an orphan's: a write by frame reference whose device failed, and
   * whose file system may read the frame until it answers or its process exits. A writer of the
   * page does not wait for that: it moves the page to another frame (movePage). Let go with
   * unpinOrphan.
   */
  orphanFrame(f: number): void {
    this.orphanPins.set(f, (this.orphanPins.get(f) ?? 0) + 1);
    this.frameEvents.wake(f);
  }

  /** Lets go an orphan's pin of frame f (its file system answered late, or exited). */
  unpinOrphan(f: number): void {
    const orphans = this.orphanPins.get(f)!;
    if (orphans > 1) this.orphanPins.set(f, orphans - 1);
    else this.orphanPins.delete(f);
    this.unpinFrame(f);
  }

  /** True if frame f holds a resident page (not under I/O) pinned only by orphans: its page may move to another frame. */
  pinnedByOrphansOnly(f: number): boolean {
    const t = this.pool.table;
    const state = t.state[f];
    return (state === CLEAN || state === MODIFIED) && t.pins[f] !== 0 && t.pins[f] === this.orphanPins.get(f) && (t.flags[f] & FrameFlag.LOCKED) === 0;
  }

  /**
   * Moves page `pno` of `seg` from frame f (pinned only by orphans) to the free frame g, bytes,
   * state, reference and page-out start: f keeps its bytes for whoever may still read it, and goes on the
   * free list once let go. The page's slot reservation, if modified, stays the page's.
   */
  movePage(seg: Segment, pno: number, f: number, g: number): void {
    const t = this.pool.table;
    copyBytes(this.pool.frameBytes(g), 0, this.pool.frameBytes(f));
    const modified = t.state[f] === MODIFIED;
    const referenced = (t.flags[f] & FrameFlag.REFERENCED) !== 0 || this.pool.accessed[f] !== 0;
    const pageOutStartedMs = t.pageOutStartedMs[f];
    this.unlink(seg, pno);
    this.link(seg, pno, g);
    if (referenced) t.flags[g] |= FrameFlag.REFERENCED;
    t.pageOutStartedMs[g] = pageOutStartedMs;
    if (modified) this.transition(g, MODIFIED);
    else {
      this.transition(g, PageState.PAGE_IN);
      this.transition(g, CLEAN);
    }
    this.pool.publish(g);
    this.freeFrame(f);
    this.frameEvents.wake(f);
  }

  /** Resolves when frame f's state, pins or flags next change. */
  waitFrame(f: number, signal?: AbortSignal): Promise<boolean> {
    return this.frameEvents.wait(f, undefined, signal);
  }

  /**
   * Waits until no page of [first, end) is in one of `states` (PAGE_IN and/or PAGE_OUT). Pages
   * that enter such a state while it waits are waited for too.
   */
  async waitRangeIdle(seg: Segment, first: number, end: number, states: readonly PageState[], signal?: AbortSignal): Promise<void> {
    for (;;) {
      let busy = -1;
      seg.pages.forEachInRange(first, end, (_pno, f) => {
        if (busy < 0 && states.includes(this.pool.table.state[f] as PageState)) busy = f;
      });
      if (busy < 0) return;
      await this.waitFrame(busy, signal);
    }
  }

  /** Frames by state, for statistics and tests. */
  frameCensus(): { free: number; pageIn: number; clean: number; modified: number; pageOut: number } {
    const census = { free: 0, pageIn: 0, clean: 0, modified: 0, pageOut: 0 };
    const keys = ['free', 'pageIn', 'clean', 'modified', 'pageOut'] as const;
    for (let f = 0; f < this.pool.count; f++) census[keys[this.pool.table.state[f]]]++;
    return census;
  }

  /** Frames holding modified bytes (each holds one slot reservation unless locked). */
  modifiedFrameCount(): number {
    let n = 0;
    for (let f = 0; f < this.pool.count; f++) if (this.isModified(f) && (this.pool.table.flags[f] & FrameFlag.LOCKED) === 0) n++;
    return n;
  }
}


import {
  MAX_EXTENT,
  MAX_LARGE_EXTENT,
  REGION_BYTES,
  UIO_READ,
  UIO_WRITE,
  V_CLIENT,
  V_LGPAGE,
  V_STRATEGY,
  V_IOWAIT,
  V_LARGE,
  V_WAITALL,
  V_WAITERR,
  VM_IOACCESSP_FLUSH,
  VM_IOACCESSP_MAKE,
  VM_IOACCESSP_PGINWAIT,
  VM_IOACCESSP_PGOUTWAIT,
  VM_IOACCESSP_WAITONLY,
} from '../constants.js';
import { PagerError } from '../errors.js';
import { offsetInRegion, type Access } from './address-space.js';
import { ClientContext, type Credentials } from './context.js';
import { makePage, pageIn } from './fault.js';
import { FrameFlag } from './frame-layout.js';
import { PageState } from './page-state.js';
import { SEGMENT_OPTIONS, SEGMENT_TYPES, Segment, type SegmentType } from './segment.js';
import { Move } from './move.js';
import { checkUio, type Uio } from '../uio.js';
import type { Vmm } from './vmm.js';

const { PAGE_IN, CLEAN, MODIFIED, PAGE_OUT } = PageState;
const IOACCESSP_FLAGS = 0x1f;
const IOACCESSP_MAKE_LIMIT = 1 << 20;

/**
 * A request's cancellation: its AbortSignal, or a function that makes one. The function form lets
 * a server make the signal only when a wait on a V_INTRSEG segment needs it (they are not cheap).
 */
export type SignalSource = AbortSignal | (() => AbortSignal);

function signalOf(source: SignalSource | undefined): AbortSignal | undefined {
  return typeof source === 'function' ? source() : source;
}

/**
 * Whether `value` is a set of the `allowed` flag bits. AIX's flags are a 32-bit int: a number past
 * 31 bits is refused whole, not cut to its low bits by JavaScript's bitwise operators.
 */
function onlyFlags(value: number, allowed: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value <= 0x7fffffff && (value & ~allowed) === 0;
}

/** A checked page interval of a segment: pages [first, end). */
interface PageRange {
  seg: Segment;
  first: number;
  end: number;
}

/**
 * The AIX services, with exactly the argument checks, error order and behaviour of SPEC §3–§4.
 * Every check runs before any state changes, so an error answer has no side effects. Each method
 * takes the caller's context first; blocking services return promises and never spin.
 */
export class VmServices {
  constructor(readonly vmm: Vmm) {}

  /** A context for a new client: its credentials and an empty address space. */
  createContext(cred: Credentials): ClientContext {
    const ctx = new ClientContext(cred);
    this.vmm.clients.add(ctx);
    return ctx;
  }

  /** The client is gone: its waits end, and it hears no more page-out failures. */
  endContext(ctx: ClientContext): void {
    ctx.end();
    this.vmm.clients.delete(ctx);
  }

  // ---- Segments ---------------------------------------------------------------------------

  /**
   * vms_create: a new segment owned by the caller; answers its vmid. `strategy`: a client segment
   * whose pages a client file system's strategy routine pages (V_STRATEGY); the caller binds it to
   * its paging device before anyone else learns the vmid.
   */
  async vmsCreate(ctx: ClientContext, type: number, size: number, options = 0, mode = 0o600, strategy = false): Promise<number> {
    if (!SEGMENT_TYPES.includes(type)) throw new PagerError('bad-type');
    if (!onlyFlags(options, SEGMENT_OPTIONS)) throw new PagerError('bad-option');
    if (strategy && type !== V_CLIENT) throw new PagerError('not-client-segment', 'only a client segment (V_CLIENT) is paged by a strategy routine');
    if (strategy && (options & V_LGPAGE) !== 0) throw new PagerError('large-pages', 'large pages are never paged out: a strategy routine would never see them');
    const ps = this.vmm.pageSize;
    const max = (options & V_LARGE) !== 0 ? MAX_LARGE_EXTENT - ps : MAX_EXTENT;
    if (!Number.isSafeInteger(size) || size < 0) throw new PagerError('bad-size');
    const extent = Math.ceil(size / ps) * ps;
    if (extent > max) throw new PagerError('bad-size', `extent ${extent} exceeds the maximum ${max}`);
    if (!Number.isSafeInteger(mode) || mode < 0 || mode > 0o777) throw new PagerError('bad-mode');
    const record = { type: type as SegmentType, options: strategy ? options | V_STRATEGY : options, extent, uid: ctx.uid, gid: ctx.gid, mode };
    const vmid = await this.vmm.store.createSegment(record);
    this.vmm.segments.set(vmid, new Segment({ vmid, ...record }, ps));
    return vmid;
  }

  /**
   * vms_delete: the store forgets the segment durably first (if it cannot, nothing changed); then
   * the vmid is invalid at once, modified pages are discarded, not written, frames under I/O are
   * freed when it completes, and waits on the segment end with EINVAL. `precondition` throws to
   * refuse, looked at last, right before (nothing between it and the delete yields).
   */
  async vmsDelete(ctx: ClientContext, vmid: number, precondition?: () => void): Promise<void> {
    await this.storeStill();
    const seg = this.segment(ctx, vmid);
    if (!ctx.mayWrite(seg)) throw new PagerError('no-write-access');
    precondition?.();
    this.vmm.store.deleteSegment(vmid);
    seg.deleted = true;
    this.vmm.segments.delete(vmid);
    this.vmm.discardRange(seg, 0, seg.pageCount);
    for (const client of this.vmm.clients) client.unheardFailures.delete(vmid);
    seg.io.wake();
  }

  // ---- Attachments ------------------------------------------------------------------------

  /** vm_att: maps the 256 MiB window of the segment holding `offset`; answers the address of `offset`. */
  vmAtt(ctx: ClientContext, vmid: number, offset: number, access: Access = 'write'): number {
    if (access !== 'read' && access !== 'write') throw new PagerError('bad-access');
    const seg = this.segment(ctx, vmid);
    if (!Number.isSafeInteger(offset) || offset < 0 || (offset >= seg.extent && offset !== 0)) throw new PagerError('offset-beyond-extent');
    if (access === 'write' && !ctx.mayWrite(seg)) throw new PagerError('no-write-access');
    if (access === 'read' && !ctx.mayRead(seg)) throw new PagerError('no-read-access');
    const windowBase = Math.floor(offset / REGION_BYTES) * REGION_BYTES;
    return ctx.space.attach({ kind: 'segment', segment: seg, windowBase, access }) + (offset - windowBase);
  }

  /** vm_det: unmaps the region holding vaddr. */
  vmDet(ctx: ClientContext, vaddr: number): void {
    ctx.space.detach(vaddr);
  }

  /** io_att: maps an I/O region of `nbytes` (a device-memory stand-in that page services refuse). */
  ioAtt(ctx: ClientContext, nbytes: number): number {
    if (!Number.isSafeInteger(nbytes) || nbytes <= 0 || nbytes > REGION_BYTES) throw new PagerError('region-too-large');
    return ctx.space.attach({ kind: 'io', bytes: nbytes });
  }

  // ---- Address-range services -------------------------------------------------------------

  /**
   * vm_write: initiates page-out of the modified pages of [vaddr, vaddr + nbytes). Without force,
   * a page whose last page-out started less than writebackMinAgeMs ago, or that is in page-out,
   * is skipped. Unmodified resident pages lose their reference bit. Resolves once the I/O is
   * initiated; vms_iowait awaits it.
   */
  async vmWrite(ctx: ClientContext, vaddr: number, nbytes: number, force: number): Promise<void> {
    const range = this.addressRange(ctx, vaddr, nbytes);
    if (range === undefined) return; // nbytes = 0 touches nothing (SPEC §3), failed store or not
    if (this.vmm.store.failed) throw new PagerError('store-failed');
    this.initiatePageOut(range, force !== 0);
  }

  /** vm_release: the pages of the range read as zeros from now on, durably once this resolves. */
  async vmRelease(ctx: ClientContext, vaddr: number, nbytes: number): Promise<void> {
    await this.storeStill();
    const range = this.addressRange(ctx, vaddr, nbytes);
    if (range !== undefined) await this.release(range);
  }

  // ---- Moving data ------------------------------------------------------------------------

  /** vm_move: moves min(limit, uio.resid) bytes between the segment at `offset` and the uio. */
  async vmMove(ctx: ClientContext, vmid: number, offset: number, limit: number, rw: number, uio: Uio, signal?: SignalSource): Promise<number> {
    return this.moveNow(ctx, vmid, offset, limit, rw, uio, signal);
  }

  /** vm_uiomove: as vm_move, at segment offset uio.offset. */
  async vmUiomove(ctx: ClientContext, vmid: number, limit: number, rw: number, uio: Uio, signal?: SignalSource): Promise<number> {
    return this.moveNow(ctx, vmid, undefined, limit, rw, uio, signal);
  }

  // ---- Page-range services ----------------------------------------------------------------

  /** vm_ioaccessp: advisory page-in (MAKE) or flush (FLUSH) of a client segment's pages, then the waits. */
  async vmIoaccessp(ctx: ClientContext, bsid: number, pfirst: number, npages: number, modifier: number, signal?: SignalSource): Promise<void> {
    if (pfirst === 0 && npages === 0) throw new PagerError('zero-range');
    if (!Number.isSafeInteger(pfirst)) throw new PagerError('bad-argument', 'pfirst is not an integer');
    if (pfirst < 0) throw new PagerError('negative-page');
    if (!Number.isSafeInteger(npages)) throw new PagerError('bad-argument', 'npages is not an integer');
    if (npages < 0) throw new PagerError('negative-count');
    const seg = this.segment(ctx, bsid);
    if (pfirst + npages > seg.pageCount) throw new PagerError('range-beyond-extent');
    if (!Number.isSafeInteger(modifier)) throw new PagerError('bad-argument', 'modifier is not an integer');
    const make = (modifier & VM_IOACCESSP_MAKE) !== 0;
    const flush = (modifier & VM_IOACCESSP_FLUSH) !== 0;
    const waitOnly = (modifier & VM_IOACCESSP_WAITONLY) !== 0;
    const waitIn = (modifier & VM_IOACCESSP_PGINWAIT) !== 0;
    const waitOut = (modifier & VM_IOACCESSP_PGOUTWAIT) !== 0;
    if (make && npages * this.vmm.pageSize > IOACCESSP_MAKE_LIMIT) throw new PagerError('make-too-large');
    if (seg.type !== V_CLIENT) throw new PagerError('not-client-segment');
    if (!onlyFlags(modifier, IOACCESSP_FLAGS)) throw new PagerError('unsupported-flag');
    if (make && flush) throw new PagerError('make-and-flush');
    if (waitOnly && !waitIn && !waitOut) throw new PagerError('waitonly-without-wait');
    if (waitOnly && (make || flush)) throw new PagerError('waitonly-with-action');
    if (flush && !ctx.mayWrite(seg)) throw new PagerError('no-write-access');
    const range = { seg, first: pfirst, end: pfirst + npages };
    if (make) this.startPageIns(range);
    if (flush && !seg.largePages) this.flush(range);
    const states = [...(waitIn ? [PAGE_IN] : []), ...(waitOut ? [PAGE_OUT] : [])];
    if (states.length > 0) await this.waitRangeIdle(ctx, range, states, signal);
  }

  /** vm_writep: initiates page-out of every modified page of the range (as vm_write with force). */
  async vmWritep(ctx: ClientContext, vmid: number, pfirst: number, npages: number): Promise<void> {
    const range = this.pageRange(ctx, vmid, pfirst, npages, { write: true, largePages: false });
    if (this.vmm.store.failed) throw new PagerError('store-failed');
    this.initiatePageOut(range, true);
  }

  /**
   * Initiates page-out of every modified page of the range, as vm_writep, but leaves the reference
   * bits alone: for callers that flush often (an NBD client's FLUSH after each journal commit),
   * where vm_writep's aging of every clean page would blind page replacement.
   */
  async syncPages(ctx: ClientContext, vmid: number, pfirst: number, npages: number): Promise<void> {
    const range = this.pageRange(ctx, vmid, pfirst, npages, { write: true, largePages: false });
    if (this.vmm.store.failed) throw new PagerError('store-failed');
    const { seg, first, end } = range;
    if (first !== 0 || end !== seg.pageCount) return this.initiatePageOut(range, true, false);
    // The whole segment: only the pages noted as modified since the last such sync can be (a
    // scan of every resident page costs ~1.3 ms per 65,536 of them); the first time, and past
    // the note's limit, all. Noting starts now.
    const noted = seg.modifiedSinceSync;
    seg.modifiedSinceSync = new Set();
    this.initiatePageOut(range, true, false, noted === undefined ? undefined : [...noted].sort((a, b) => a - b));
  }

  /** vm_releasep: as vm_release, for a page range of a segment. */
  async vmReleasep(ctx: ClientContext, vmid: number, pfirst: number, npages: number): Promise<void> {
    await this.storeStill();
    await this.release(this.pageRange(ctx, vmid, pfirst, npages, { write: true, largePages: false }));
  }

  /** vm_flushp: pages out the modified pages and frees every frame of the range when its I/O completes; clean frames at once. */
  async vmFlushp(ctx: ClientContext, vmid: number, pfirst: number, npages: number): Promise<void> {
    const range = this.pageRange(ctx, vmid, pfirst, npages, { write: true, largePages: false });
    if (this.vmm.store.failed) throw new PagerError('store-failed');
    this.flush(range);
  }

  /** vm_readp: advisory page-in of the range; with V_IOWAIT, first waits for I/O in the range. */
  async vmReadp(ctx: ClientContext, vmid: number, pfirst: number, npages: number, flags: number, signal?: SignalSource): Promise<void> {
    const range = this.pageRange(ctx, vmid, pfirst, npages, { write: false, largePages: true });
    if (!onlyFlags(flags, V_IOWAIT)) throw new PagerError('unsupported-flag');
    if ((flags & V_IOWAIT) !== 0) await this.waitRangeIdle(ctx, range, [PAGE_IN, PAGE_OUT], signal);
    this.startPageIns(range);
  }

  /** vm_makep: makes a client page resident, zero-filled and modified, without a page-in. */
  async vmMakep(ctx: ClientContext, vmid: number, pno: number, signal?: SignalSource): Promise<void> {
    const seg = this.segment(ctx, vmid);
    if (seg.type !== V_CLIENT) throw new PagerError('not-client-segment');
    if (!Number.isSafeInteger(pno) || pno < 0 || pno >= seg.pageCount) throw new PagerError('bad-page-number');
    if (!ctx.mayWrite(seg)) throw new PagerError('no-write-access');
    await makePage(this.vmm, seg, pno, this.waitSignal(ctx, seg, signal));
  }

  /** vm_invalidatep: waits for I/O in the range, then discards its frames without writing them. */
  async vmInvalidatep(ctx: ClientContext, vmid: number, pfirst: number, npages: number, signal?: SignalSource): Promise<void> {
    const range = this.pageRange(ctx, vmid, pfirst, npages, { write: true, largePages: false });
    await this.waitRangeIdle(ctx, range, [PAGE_IN, PAGE_OUT], signal);
    this.vmm.discardRange(range.seg, range.first, range.end);
  }

  /** vm_qpages: the number of page frames the segment holds. */
  vmQpages(ctx: ClientContext, vmid: number): number {
    return this.segment(ctx, vmid).pages.size;
  }

  /**
   * vm_qmodify: true if a page-out completed since the last query (the segment modified bit,
   * which this clears) or a frame of the segment is modified now.
   */
  vmQmodify(ctx: ClientContext, vmid: number): boolean {
    const seg = this.segment(ctx, vmid);
    const bit = seg.pagedOutSinceQuery;
    seg.pagedOutSinceQuery = false;
    return bit || this.vmm.hasModifiedPages(seg);
  }

  /** vms_iowait: vms_iowaitf with V_WAITERR. */
  vmsIowait(ctx: ClientContext, vmid: number, signal?: SignalSource): Promise<void> {
    return this.vmsIowaitf(ctx, vmid, V_WAITERR, signal);
  }

  /**
   * vms_iowaitf: waits until every page-out of the segment initiated before the call is complete.
   * V_WAITERR answers EIO as soon as a page-out has failed that this client has not heard of;
   * V_WAITALL waits for all, then answers EIO if one failed. Each failure is reported once to
   * each client that was connected when it happened, then cleared for that client (SPEC §4), so
   * no client can take another's error. A segment deleted meanwhile answers EINVAL.
   */
  async vmsIowaitf(ctx: ClientContext, vmid: number, flags: number, signal?: SignalSource): Promise<void> {
    const seg = this.segment(ctx, vmid);
    if (flags !== V_WAITERR && flags !== V_WAITALL) throw new PagerError('unsupported-flag');
    const io = seg.io;
    const target = io.captured;
    const wakeOn = this.waitSignal(ctx, seg, signal);
    for (;;) {
      if (seg.deleted) throw new PagerError('no-such-segment');
      const done = io.completed >= target;
      const failure = done || flags === V_WAITERR ? ctx.unheardFailures.get(vmid) : undefined;
      if (failure !== undefined) {
        ctx.unheardFailures.delete(vmid);
        throw failure;
      }
      if (done) return;
      await io.changed(wakeOn);
    }
  }

  // ---- Shared checks ----------------------------------------------------------------------

  /**
   * Releases and deletes wait while the store checks its metadata (the map must stand still);
   * after that, no wait at all, so they take effect in the order they arrive. A failed check
   * leaves a failed store, which the call then meets.
   */
  private async storeStill(): Promise<void> {
    const checking = this.vmm.store.checking;
    if (checking !== undefined) await checking.catch(() => undefined);
  }

  /** The live segment `vmid` if the caller may see it; EINVAL (no-such-segment) otherwise. */
  private segment(ctx: ClientContext, vmid: number): Segment {
    const seg = Number.isSafeInteger(vmid) ? this.vmm.segments.get(vmid) : undefined;
    if (seg === undefined || seg.deleted || !ctx.maySee(seg)) throw new PagerError('no-such-segment');
    return seg;
  }

  /**
   * Checks an address range in the order of SPEC §3 (region, I/O region, length, boundary, large
   * pages, write access) and answers its pages, or undefined when nbytes is 0.
   */
  private addressRange(ctx: ClientContext, vaddr: number, nbytes: number): PageRange | undefined {
    const region = ctx.space.lookup(vaddr);
    if (region === undefined) throw new PagerError('region-not-defined');
    if (region.kind === 'io') throw new PagerError('io-region');
    if (!Number.isSafeInteger(nbytes)) throw new PagerError('bad-argument', 'nbytes is not an integer');
    if (nbytes < 0) throw new PagerError('negative-length');
    const inRegion = offsetInRegion(vaddr);
    const start = region.windowBase + inRegion;
    const seg = region.segment;
    if (inRegion + nbytes > REGION_BYTES || start + nbytes > seg.extent) throw new PagerError('crosses-object-boundary');
    if (seg.largePages) throw new PagerError('large-pages');
    if (region.access !== 'write') throw new PagerError('no-write-access');
    if (nbytes === 0) return undefined;
    const ps = this.vmm.pageSize;
    return { seg, first: Math.floor(start / ps), end: Math.ceil((start + nbytes) / ps) };
  }

  /**
   * Checks a page range in the order of the AIX page-range services (vm_writep): pfirst = 0 and
   * npages = 0, the vmid, pfirst, npages, the extent, large pages; then the caller's access.
   */
  private pageRange(
    ctx: ClientContext,
    vmid: number,
    pfirst: number,
    npages: number,
    need: { write: boolean; largePages: boolean },
  ): PageRange {
    if (pfirst === 0 && npages === 0) throw new PagerError('zero-range');
    const seg = this.segment(ctx, vmid);
    if (!Number.isSafeInteger(pfirst)) throw new PagerError('bad-argument', 'pfirst is not an integer');
    if (pfirst < 0) throw new PagerError('negative-page');
    if (!Number.isSafeInteger(npages)) throw new PagerError('bad-argument', 'npages is not an integer');
    if (npages < 0) throw new PagerError('negative-count');
    if (pfirst + npages > seg.pageCount) throw new PagerError('range-beyond-extent');
    if (!need.largePages && seg.largePages) throw new PagerError('large-pages');
    if (need.write ? !ctx.mayWrite(seg) : !ctx.mayRead(seg)) throw new PagerError(need.write ? 'no-write-access' : 'no-read-access');
    return { seg, first: pfirst, end: pfirst + npages };
  }

  // ---- Shared behaviour -------------------------------------------------------------------

  /** Starts page-out of the range's modified pages (see vmWrite for what force changes). */
  private initiatePageOut({ seg, first, end }: PageRange, force: boolean, age = true, only?: readonly number[]): void {
    const vmm = this.vmm;
    const t = vmm.pool.table;
    const now = vmm.now();
    const minAge = vmm.options.writebackMinAgeMs;
    const batch: number[] = [];
    const visit = (_pno: number, f: number): void => {
      const state = t.state[f];
      if (!vmm.isModified(f)) {
        if (age && (state === CLEAN || state === PAGE_OUT)) t.flags[f] &= ~FrameFlag.REFERENCED;
      } else if (state === MODIFIED) {
        if (force || now - t.pageOutStartedMs[f] >= minAge) batch.push(f);
      } else if (force) {
        vmm.pageout.queueAgain(f, seg); // PAGE_OUT, modified again
      }
    };
    if (only === undefined) seg.pages.forEachInRange(first, end, visit);
    else {
      for (const pno of only) {
        const f = seg.pages.get(pno);
        if (f !== -1) visit(pno, f);
      }
    }
    vmm.pageout.start(batch);
  }

  /** Pages out the range's modified pages and frees each frame when its I/O is done; clean frames now. */
  private flush({ seg, first, end }: PageRange): void {
    const vmm = this.vmm;
    const t = vmm.pool.table;
    const batch: number[] = [];
    const clean: number[] = [];
    seg.pages.forEachInRange(first, end, (_pno, f) => {
      const state = t.state[f];
      if (state === CLEAN) {
        vmm.unlinkClean(f);
        clean.push(f);
        return;
      }
      t.flags[f] |= FrameFlag.FREE_AT_IO_DONE;
      if (state === MODIFIED) batch.push(f);
      else if (state === PAGE_OUT && vmm.isModified(f)) vmm.pageout.queueAgain(f, seg);
    });
    vmm.freeInOrder(clean);
    vmm.pageout.start(batch);
  }

  /**
   * Has the store zero the range's pages durably, then discards their frames. The store goes
   * first: when it refuses, the frames (perhaps the only copy of newer bytes) are still there and
   * nothing changed.
   */
  private async release({ seg, first, end }: PageRange): Promise<void> {
    this.vmm.store.releasePages(seg.vmid, first, end - first);
    this.vmm.discardRange(seg, first, end);
    this.vmm.counters.releases += end - first;
  }

  /**
   * Waits until no page of the range is in one of `states`; ends with EINTR when the client goes
   * (or cancels, on a V_INTRSEG segment), and with EINVAL when the segment is deleted meanwhile.
   */
  private async waitRangeIdle(ctx: ClientContext, { seg, first, end }: PageRange, states: readonly PageState[], signal?: SignalSource): Promise<void> {
    await this.vmm.waitRangeIdle(seg, first, end, states, this.waitSignal(ctx, seg, signal));
    if (seg.deleted) throw new PagerError('no-such-segment');
  }

  /**
   * What ends a wait of this client on this segment: the request's cancellation on a V_INTRSEG
   * segment (the server cancels every request of a closed connection too), else the client's
   * going away.
   */
  private waitSignal(ctx: ClientContext, seg: Segment, source: SignalSource | undefined): AbortSignal {
    return (seg.interruptible ? signalOf(source) : undefined) ?? ctx.gone;
  }

  /** Advisory page-in of the range's absent pages, while frames can be had without waiting. */
  private startPageIns({ seg, first, end }: PageRange): void {
    const vmm = this.vmm;
    for (let pno = first; pno < end; pno++) {
      if (seg.pages.get(pno) >= 0) continue;
      if (!vmm.mayPin(seg)) return;
      const f = vmm.tryAllocateFrame();
      if (f < 0) return;
      // A failed advisory page-in is reported to whoever faults the page next.
      pageIn(vmm, seg, pno, f).catch(() => undefined);
    }
  }

  /**
   * vm_move and vm_uiomove as the daemon calls them: the checks, then the copy. Answers the bytes
   * moved at once when no page needs waiting for, else a promise of them. Throws the errors that
   * come before any byte moves, and a copy's error, synchronously (vmMove turns both into
   * rejections).
   *
   * `requestEnd` is where the caller's whole request ends in the segment when this call moves one
   * piece of it (a client splits a move larger than a message): the extent check covers the whole
   * request, so a move that passes the extent answers EFAULT before any piece moves a byte.
   */
  moveNow(
    ctx: ClientContext,
    vmid: number,
    offsetArg: number | undefined,
    limit: number,
    rw: number,
    uio: Uio,
    signal?: SignalSource,
    requestEnd?: number,
  ): number | Promise<number> {
    const total = checkUio(uio);
    const seg = this.segment(ctx, vmid);
    if (!Number.isSafeInteger(limit)) throw new PagerError('bad-argument', 'limit is not an integer');
    const offset = offsetArg ?? uio.offset;
    const n = Math.max(0, Math.min(limit, uio.resid));
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + n > seg.extent) throw new PagerError('beyond-extent');
    if (requestEnd !== undefined && (!Number.isSafeInteger(requestEnd) || requestEnd < offset + n)) throw new PagerError('malformed-uio', 'the whole request ends before this piece');
    if (requestEnd !== undefined && requestEnd > seg.extent) throw new PagerError('beyond-extent', `the request ends at ${requestEnd}, past the extent ${seg.extent}`);
    if (rw !== UIO_READ && rw !== UIO_WRITE) throw new PagerError('bad-rw');
    const write = rw === UIO_WRITE;
    if (write ? !ctx.mayWrite(seg) : !ctx.mayRead(seg)) throw new PagerError(write ? 'no-write-access' : 'no-read-access');
    if (n === 0) return 0;
    const move = new Move(this.vmm, seg, offset, n, write, uio, total, this.waitSignal(ctx, seg, signal), ctx);
    return move.copyResident() ? move.moved : move.run();
  }
}

import { UIO_READ, UIO_WRITE, V_STRATEGY } from '../constants.js';
import { GroupCommit } from '../group-commit.js';
import type { ClientContext } from '../vm/context.js';
import type { Segment } from '../vm/segment.js';
import type { VmServices } from '../vm/services.js';
import type { Vmm } from '../vm/vmm.js';
import { STATE_HOLE, STATE_ZERO, TxFlag } from './protocol.js';

/** Whether the store maps a page (it has bytes on the device). */
export type PageMapped = (vmid: number, pno: number) => boolean;

/** Most pages one BLOCK_STATUS reply looks at (a reply may cover less than asked: NBD allows it). */
const STATUS_SCAN_PAGES = 65536;
/** Each segment's flushes, shared by every connection exporting it. */
const flushGroups = new WeakMap<Segment, GroupCommit>();

/** Zeros written at a time by WRITE_ZEROES with NO_HOLE, and at the edges of a range. */
const ZERO_CHUNK = 1024 * 1024;

/**
 * A segment as an NBD export, for one peer: its name is the vmid in decimal. A peer sees the
 * segments it may read (its credentials, as on the native socket); one it may not write is
 * exported read-only. Every operation goes through the VMM services with the peer's context, so
 * access checks, ordering and durability are the native protocol's.
 */
export class NbdExport {
  readonly vmid: number;
  readonly size: number;
  readonly readOnly: boolean;
  /** Large-page segments stay in memory: no page-out, so no flush, FUA or trim. */
  readonly durable: boolean;
  /**
   * A client file system pages the segment (V_STRATEGY): a page with neither frame nor slot holds
   * what the file system holds, not zeros, and a released page reads that back.
   */
  private readonly pagedByFileSystem: boolean;

  constructor(
    private readonly seg: Segment,
    private readonly svc: VmServices,
    private readonly ctx: ClientContext,
    private readonly pageSize: number,
    private readonly mapped: PageMapped,
  ) {
    this.vmid = seg.vmid;
    this.size = seg.extent;
    this.readOnly = !ctx.mayWrite(seg);
    this.durable = !seg.largePages;
    this.pagedByFileSystem = (seg.options & V_STRATEGY) !== 0;
  }

  /** The export a peer names, if it may use it. */
  static find(vmm: Vmm, svc: VmServices, ctx: ClientContext, name: string, mapped: PageMapped): NbdExport | undefined {
    if (!/^[1-9][0-9]{0,15}$/.test(name)) return undefined;
    const seg = vmm.segments.get(Number(name));
    if (seg === undefined || !ctx.mayRead(seg)) return undefined;
    return new NbdExport(seg, svc, ctx, vmm.pageSize, mapped);
  }

  /** The names of the exports a peer may use. */
  static names(vmm: Vmm, ctx: ClientContext): string[] {
    return [...vmm.segments.values()].filter((s) => ctx.mayRead(s)).map((s) => String(s.vmid));
  }

  /** The export's transmission flags; `structured`: structured replies were negotiated (DF needs them). */
  transmissionFlags(structured: boolean): number {
    let flags = TxFlag.HAS_FLAGS | TxFlag.SEND_WRITE_ZEROES | TxFlag.SEND_CACHE;
    if (structured) flags |= TxFlag.SEND_DF;
    if (this.readOnly) flags |= TxFlag.READ_ONLY;
    if (this.durable) flags |= TxFlag.SEND_FLUSH | TxFlag.SEND_FUA | TxFlag.SEND_TRIM;
    // A flush pages out every modified page of the segment, whichever connection wrote it; a
    // read-only peer's flush pages out nothing, so it is not promised to it.
    if (this.durable && !this.readOnly) flags |= TxFlag.CAN_MULTI_CONN;
    return flags;
  }

  get description(): string {
    return `pagerd segment ${this.vmid}${this.durable ? '' : ' (large pages: memory only, no flush)'}`;
  }

  /** True while the segment exists (a deleted one answers EIO, and the connection ends). */
  get alive(): boolean {
    return !this.seg.deleted;
  }

  /** Reads into `into`: at once when its pages are at hand (undefined), else a promise. */
  read(offset: number, into: Uint8Array): Promise<void> | undefined {
    return settled(this.svc.moveNow(this.ctx, this.vmid, offset, into.length, UIO_READ, uio(into)));
  }

  /** True if none of the range's pages has bytes (neither a frame nor a slot): it reads as zeros without a page-in. */
  isHole(offset: number, length: number): boolean {
    const { first, end } = this.pagesTouched(offset, length);
    for (let pno = first; pno < end; pno++) if (this.hasBytes(pno)) return false;
    return true;
  }

  /** Writes `data`: at once when its pages are at hand and no FUA was asked (undefined), else a promise. */
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> | undefined {
    const moving = settled(this.svc.moveNow(this.ctx, this.vmid, offset, data.length, UIO_WRITE, uio(data)));
    if (!fua) return moving;
    return (moving ?? Promise.resolve()).then(() => this.flushRange(offset, data.length));
  }

  /**
   * Makes every page of the segment modified before the call durable: flushes asked for at once,
   * on any connection, share one scan and its page-out cycles (GroupCommit).
   */
  flush(): Promise<void> {
    let group = flushGroups.get(this.seg);
    if (group === undefined) flushGroups.set(this.seg, (group = new GroupCommit()));
    return this.answered(group.request(() => pageOut(this.svc, this.ctx, this.seg, 0, this.seg.pageCount)));
  }

  private flushRange(offset: number, length: number): Promise<void> {
    const { first, end } = this.pagesTouched(offset, length);
    return this.answered(pageOut(this.svc, this.ctx, this.seg, first, end));
  }

  /**
   * A durable wait as this connection hears it: a failure the wait heard is not told to the
   * connection again; after a wait that succeeded, one the connection had not heard yet is (SPEC
   * §4, as vms_iowait would).
   */
  private async answered(waiting: Promise<void>): Promise<void> {
    const unheard = this.ctx.unheardFailures;
    try {
      await waiting;
    } catch (err) {
      if (unheard.get(this.vmid) === err) unheard.delete(this.vmid);
      throw err;
    }
    const failure = unheard.get(this.vmid);
    if (failure === undefined) return;
    unheard.delete(this.vmid);
    throw failure;
  }

  /** Releases the pages wholly inside the range (advisory: the edges of partly covered pages stay). */
  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    const { first, end } = this.pagesInside(offset, length);
    if (end > first) await this.svc.vmReleasep(this.ctx, this.vmid, first, end - first);
    if (fua) await this.flushRange(offset, length);
  }

  /** Makes exactly the range read as zeros: whole pages released (written, with `noHole`), the edges written. */
  async writeZeroes(offset: number, length: number, noHole: boolean, fua: boolean): Promise<void> {
    const { first, end } = this.pagesInside(offset, length);
    if (noHole || !this.durable || this.pagedByFileSystem || end <= first) {
      await this.writeZeros(offset, length);
    } else {
      await this.writeZeros(offset, first * this.pageSize - offset);
      await this.svc.vmReleasep(this.ctx, this.vmid, first, end - first);
      await this.writeZeros(end * this.pageSize, offset + length - end * this.pageSize);
    }
    if (fua) await this.flushRange(offset, length);
  }

  /** Starts page-ins of the range (advisory). */
  async cache(offset: number, length: number): Promise<void> {
    const { first, end } = this.pagesTouched(offset, length);
    if (end > first) await this.svc.vmReadp(this.ctx, this.vmid, first, end - first, 0);
  }

  /**
   * base:allocation extents from `offset`: (length, flags) pairs, runs of pages with bytes (0) and
   * without (hole, reads as zeros), covering at most `length` bytes; one run only with `one`.
   */
  allocation(offset: number, length: number, one: boolean): { length: number; flags: number }[] {
    const ps = this.pageSize;
    const last = Math.min(offset + length, this.size, (Math.floor(offset / ps) + STATUS_SCAN_PAGES) * ps);
    const extents: { length: number; flags: number }[] = [];
    let at = offset;
    while (at < last) {
      const pno = Math.floor(at / ps);
      const flags = this.hasBytes(pno) ? 0 : STATE_HOLE | STATE_ZERO;
      const runEnd = Math.min((pno + 1) * ps, last);
      const previous = extents[extents.length - 1];
      if (previous !== undefined && previous.flags === flags) previous.length += runEnd - at;
      else if (one && previous !== undefined) break;
      else extents.push({ length: runEnd - at, flags });
      at = runEnd;
    }
    return extents;
  }

  private hasBytes(pno: number): boolean {
    return this.pagedByFileSystem || this.seg.pages.get(pno) !== -1 || this.mapped(this.vmid, pno);
  }

  private async writeZeros(offset: number, length: number): Promise<void> {
    for (let at = offset; at < offset + length; at += ZERO_CHUNK) {
      const n = Math.min(ZERO_CHUNK, offset + length - at);
      await this.svc.vmMove(this.ctx, this.vmid, at, n, UIO_WRITE, uio(zeros(n)));
    }
  }

  private pagesTouched(offset: number, length: number): { first: number; end: number } {
    return { first: Math.floor(offset / this.pageSize), end: Math.ceil((offset + length) / this.pageSize) };
  }

  private pagesInside(offset: number, length: number): { first: number; end: number } {
    return { first: Math.ceil(offset / this.pageSize), end: Math.floor((offset + length) / this.pageSize) };
  }
}

/**
 * Makes every page of the range modified before the call durable (for FUA: only the request's
 * pages). A page-out failure is reported once to each context (SPEC §4), and a connection has
 * many requests in flight, and a flush serves every connection that asked: the wait has a context
 * of its own (the peer's credentials), so it hears every failure that happens while it waits,
 * whoever else heard it first, and lasts until the page-outs end whichever connection goes.
 */
async function pageOut(svc: VmServices, peer: ClientContext, seg: Segment, first: number, end: number): Promise<void> {
  const waiter = svc.createContext({ uid: peer.uid, gid: peer.gid, pid: peer.pid });
  try {
    await svc.syncPages(waiter, seg.vmid, first, end - first);
    await svc.vmsIowait(waiter, seg.vmid);
  } finally {
    svc.endContext(waiter);
  }
}

/** A move done at once as undefined; one still going as a promise of nothing. */
function settled(moved: number | Promise<number>): Promise<void> | undefined {
  return typeof moved === 'number' ? undefined : moved.then(() => undefined);
}

let zeroBuffer = new Uint8Array(0);
function zeros(n: number): Uint8Array {
  if (zeroBuffer.length < n) zeroBuffer = new Uint8Array(Math.max(n, ZERO_CHUNK));
  return zeroBuffer.subarray(0, n);
}

function uio(buf: Uint8Array): { iov: Uint8Array[]; offset: number; resid: number; segflg: number } {
  return { iov: [buf], offset: 0, resid: buf.length, segflg: 0 };
}

import { V_STRATEGY } from '../constants.js';
import { PagerError } from '../errors.js';
import type { BackingStore, PageWrite, WriteTicket } from '../vm/store.js';
import type { SegmentRecord } from '../vm/segment.js';
import type { PagingDevices, StrategyWrite } from './paging-devices.js';

/**
 * The engine's backing store when client file systems page their own segments: pages of segments
 * created with V_STRATEGY go to their paging device's strategy routine (PagingDevices); every other
 * page goes to pagerd's own store. Pages of strategy segments are the file system's: none is
 * written to pagerd's device or database, none takes a slot there (the file system's own errors,
 * ENOSPC included, are what callers hear), and a release only discards cached frames (the next
 * read pages in what the file system holds).
 */
export class RoutingStore implements BackingStore {
  /**
   * Segments paged by a strategy routine (bound to a device or not), and the uid owning each,
   * deleted ones included: the engine gives back the reservations of a deleted segment's frames
   * after the delete (vmids are never reused), and those must not reach pagerd's store, which
   * never took them.
   */
  private readonly owners = new Map<number, number>();
  /** Strategy segments deleted: their reservations are no longer counted. */
  private readonly deleted = new Set<number>();
  /** Modified pages of each strategy segment (the reservations the engine holds for them: one each). */
  private readonly modified = new Map<number, number>();
  /**
   * Pages of each uid's strategy segments that are modified or being written out: frames only
   * those segments' file systems can give back (by writing them), so a uid holds at most
   * maxHeldPerUid of them, and all uids together maxHeldTotal, whatever their file systems do.
   */
  private readonly held = new Map<number, number>();
  private heldTotal = 0;

  constructor(
    private readonly inner: BackingStore,
    private readonly devices: PagingDevices,
    private readonly limits: {
      /** Most pages one strategy write carries (contiguous pages of one segment travel together). */
      maxRequestPages: number;
      /** Most pages of one batch of a strategy segment's page-outs (batchPages): a device's requests in flight, full. */
      maxBatchPages: number;
      /** Most modified pages segments without a live device may hold. */
      maxStrandedPages: number;
      /** Most pages one uid's strategy segments may hold modified or being written out (mayModify). */
      maxHeldPerUid: number;
      /** Most pages all strategy segments together may hold so (the rest of the pool is pagerd's store's). */
      maxHeldTotal: number;
    },
  ) {}

  get pageSize(): number {
    return this.inner.pageSize;
  }

  get failed(): boolean {
    return this.inner.failed;
  }

  get checking(): Promise<unknown> | undefined {
    return this.inner.checking;
  }

  /** Whether segment `vmid` is paged by a strategy routine. */
  pagedByStrategy(vmid: number): boolean {
    return this.owners.has(vmid) && !this.deleted.has(vmid);
  }

  async loadSegments(): Promise<SegmentRecord[]> {
    const records = await this.inner.loadSegments();
    for (const r of records) if ((r.options & V_STRATEGY) !== 0) this.owners.set(r.vmid, r.uid);
    return records;
  }

  async createSegment(record: Omit<SegmentRecord, 'vmid'>): Promise<number> {
    const vmid = await this.inner.createSegment(record);
    if ((record.options & V_STRATEGY) !== 0) this.owners.set(vmid, record.uid);
    return vmid;
  }

  deleteSegment(vmid: number): void {
    this.inner.deleteSegment(vmid);
    if (!this.owners.has(vmid)) return;
    this.addModified(vmid, -(this.modified.get(vmid) ?? 0));
    this.deleted.add(vmid);
    this.devices.unbind(vmid);
  }

  readPage(vmid: number, pno: number, into: Uint8Array): Promise<void> {
    return this.owners.has(vmid) ? this.devices.read(vmid, pno, 1, into) : this.inner.readPage(vmid, pno, into);
  }

  readPageNow(vmid: number, pno: number, into: Uint8Array): boolean {
    return this.owners.has(vmid) ? false : this.inner.readPageNow(vmid, pno, into);
  }

  /**
   * The engine sends pages of one pager per batch (pagerOf): a batch is either pagerd's store's or
   * one strategy segment's. A strategy batch goes as writes of contiguous pages (PagingDevices.write:
   * from the frames if sent at once, captured once the socket has taken them; else captured at once
   * and copied when sent).
   */
  writePages(pages: readonly PageWrite[]): WriteTicket {
    if (pages.length === 0 || !this.owners.has(pages[0].vmid)) return this.inner.writePages(pages);
    const vmid = pages[0].vmid;
    const writes: StrategyWrite[] = [];
    // A range's page-out comes in page order already (sorting 16,384 pages costs ~1 ms).
    const sorted = inPageOrder(pages) ? pages : [...pages].sort((a, b) => a.pno - b.pno);
    for (let first = 0; first < sorted.length; ) {
      const data: Uint8Array[] = [sorted[first].data];
      let frames: number[] | undefined = sorted[first].frame === undefined ? undefined : [sorted[first].frame!];
      let end = first + 1;
      for (; end < sorted.length && end - first < this.limits.maxRequestPages && sorted[end].pno === sorted[end - 1].pno + 1; end++) {
        data.push(sorted[end].data);
        const frame = sorted[end].frame;
        if (frame === undefined) frames = undefined;
        else frames?.push(frame);
      }
      writes.push(this.devices.write(vmid, sorted[first].pno, data, frames));
      first = end;
    }
    // The pages' reservations are consumed; a failed batch gives them back (the pages stay modified).
    // Their frames are held until the file system answers, either way.
    this.addModified(vmid, -pages.length);
    this.hold(vmid, pages.length);
    const captured = writes.length === 1 ? writes[0].captured : Promise.all(writes.map((w) => w.captured)).then(() => undefined);
    // Settled only once every run has: a failed batch's pages may be written again at once, and
    // an older write of theirs still at the file system could land after the newer one.
    const complete = Promise.allSettled(writes.map((w) => w.complete)).then((results) => {
      this.hold(vmid, -pages.length);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed === undefined) return;
      this.addModified(vmid, pages.length);
      throw (failed as PromiseRejectedResult).reason;
    });
    complete.catch(() => undefined); // the engine awaits it; an early rejection is not unhandled
    return { captured, complete };
  }

  pageInServer(vmid: number, pno: number): object | undefined {
    return this.owners.has(vmid) ? this.devices.readingFor(vmid, pno)?.context : undefined;
  }

  pageOutServer(vmid: number, pno: number): object | undefined {
    return this.owners.has(vmid) ? this.devices.writingFor(vmid, pno)?.context : undefined;
  }

  mayPageOut(vmid: number): boolean {
    return !this.owners.has(vmid) || this.devices.live(vmid);
  }

  batchPages(vmid: number): number {
    return this.owners.has(vmid) ? this.limits.maxBatchPages : Infinity;
  }

  /** Pages of different pagers never share a batch: their failures are their own. */
  pagerOf(vmid: number): number {
    return this.owners.has(vmid) ? vmid : 0;
  }

  releasePages(vmid: number, pfirst: number, npages: number): void {
    if (!this.owners.has(vmid)) this.inner.releasePages(vmid, pfirst, npages);
  }

  /**
   * A strategy segment's page takes no slot of pagerd's store: it is counted, and refused (ENOMEM)
   * while the segment has no live device and such segments already hold maxStrandedPages modified
   * pages: a dead file system must not fill the pool with pages nobody can write.
   */
  reserveSlots(count: number, vmid: number): boolean {
    if (!this.owners.has(vmid)) return this.inner.reserveSlots(count, vmid);
    if (this.deleted.has(vmid)) return true;
    if (!this.devices.live(vmid) && this.strandedPages() + count > this.limits.maxStrandedPages) {
      throw new PagerError('stranded-pages', `segment ${vmid} has no live paging device, and segments without one hold ${this.strandedPages()} modified pages`);
    }
    this.addModified(vmid, count);
    return true;
  }

  unreserveSlots(count: number, vmid: number): void {
    if (this.owners.has(vmid)) this.addModified(vmid, -count);
    else this.inner.unreserveSlots(count, vmid);
  }

  /** Modified pages of strategy segments without a live device. */
  private strandedPages(): number {
    let n = 0;
    for (const [vmid, pages] of this.modified) if (!this.devices.live(vmid)) n += pages;
    return n;
  }

  /**
   * False while strategy segment `vmid`'s owner holds maxHeldPerUid pages modified or being
   * written out, or all strategy segments together maxHeldTotal (false for every segment sharing
   * the limit then): a new modified page must wait for page-outs, so no client's file system,
   * failing, gone or slow, holds more of the pool than that, nor all of them more than theirs.
   * True for every other segment.
   */
  mayModify(vmid: number): boolean {
    const uid = this.owners.get(vmid);
    if (uid === undefined || this.deleted.has(vmid)) return true;
    return this.heldTotal < this.limits.maxHeldTotal && (this.held.get(uid) ?? 0) < this.limits.maxHeldPerUid;
  }

  /** Pages each uid's strategy segments hold modified or being written out (for stats). */
  heldByUid(): Record<number, number> {
    return Object.fromEntries(this.held);
  }

  private addModified(vmid: number, by: number): void {
    if (this.deleted.has(vmid)) return;
    const n = (this.modified.get(vmid) ?? 0) + by;
    if (n > 0) this.modified.set(vmid, n);
    else this.modified.delete(vmid);
    this.hold(vmid, by);
  }

  /** Counts pages of `vmid` against its owner's maxHeldPerUid, and all strategy segments' maxHeldTotal. */
  private hold(vmid: number, by: number): void {
    const uid = this.owners.get(vmid)!;
    const n = (this.held.get(uid) ?? 0) + by;
    if (n > 0) this.held.set(uid, n);
    else this.held.delete(uid);
    this.heldTotal += by;
  }
}

function inPageOrder(pages: readonly PageWrite[]): boolean {
  for (let i = 1; i < pages.length; i++) if (pages[i].pno < pages[i - 1].pno) return false;
  return true;
}

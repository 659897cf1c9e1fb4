import { PagerError } from '../../src/errors.js';
import type { SegmentRecord } from '../../src/vm/segment.js';
import type { BackingStore, PageWrite, WriteTicket } from '../../src/vm/store.js';

/**
 * A test double of the engine's backing store, in memory. It keeps the store contract (call-order
 * stamps, reservations, copy-on-write slot accounting) so engine tests can drive I/O completion by
 * hand, in any order, and inject failures. Never used by the product.
 */
interface Stamped {
  data: Uint8Array | null; // null: released (reads as zeros, holds no slot)
  stamp: number;
}

export interface PendingWrite {
  pages: (PageWrite & { stamp: number })[];
  captured: boolean;
  snapshot: Uint8Array[];
  resolveCaptured: () => void;
  resolveComplete: () => void;
  rejectComplete: (err: Error) => void;
}

export interface PendingRead {
  vmid: number;
  pno: number;
  finish: (error?: Error) => void;
}

export class MemoryStore implements BackingStore {
  readonly pageSize: number;
  failed = false;
  readonly checking = undefined;
  /** 'auto': writes complete on the next turn of the event loop; 'manual': the test settles them. */
  writeMode: 'auto' | 'manual' = 'auto';
  /** 'auto': reads complete on the next microtask; 'manual': the test settles them. */
  readMode: 'auto' | 'manual' = 'auto';
  readonly pendingWrites: PendingWrite[] = [];
  readonly pendingReads: PendingRead[] = [];
  /** Pages whose reads fail their checksum. */
  readonly corrupt = new Set<string>();
  /** When set, every write batch fails with this error. */
  failWrites: PagerError | undefined;
  /** Most pages of one batch of page-outs the engine sends (BackingStore.batchPages). */
  batchLimit = Infinity;
  reserved = 0;
  inFlight = 0;
  /** Every page writePages was asked to write, refused or not. */
  readonly writeLog: { vmid: number; pno: number }[] = [];
  private readonly capacity: number;
  private readonly segments = new Map<number, SegmentRecord>();
  private readonly pages = new Map<string, Stamped>();
  private readonly deleted = new Map<number, number>();
  private nextVmid = 1;
  private clock = 0;

  constructor(pageSize = 4096, capacitySlots = 1 << 20) {
    this.pageSize = pageSize;
    this.capacity = capacitySlots;
  }

  async loadSegments(): Promise<SegmentRecord[]> {
    return [...this.segments.values()];
  }

  async createSegment(record: Omit<SegmentRecord, 'vmid'>): Promise<number> {
    this.checkUsable();
    const vmid = this.nextVmid++;
    this.segments.set(vmid, { vmid, ...record });
    return vmid;
  }

  deleteSegment(vmid: number): void {
    this.checkUsable();
    this.segments.delete(vmid);
    this.deleted.set(vmid, ++this.clock);
    for (const key of [...this.pages.keys()]) if (key.startsWith(`${vmid}:`)) this.pages.delete(key);
  }

  /** In 'auto' read mode every page is at hand; in 'manual' mode only readPage reads (the test completes it). */
  readPageNow(vmid: number, pno: number, into: Uint8Array): boolean {
    if (this.readMode !== 'auto') return false;
    const key = `${vmid}:${pno}`;
    if (this.corrupt.has(key)) throw new PagerError('checksum-mismatch');
    this.fill(key, into);
    return true;
  }

  private fill(key: string, into: Uint8Array): void {
    const data = this.pages.get(key)?.data;
    if (data) into.set(data);
    else into.fill(0);
  }

  readPage(vmid: number, pno: number, into: Uint8Array): Promise<void> {
    const key = `${vmid}:${pno}`;
    const fill = (): void => this.fill(key, into);
    if (this.corrupt.has(key)) return Promise.reject(new PagerError('checksum-mismatch'));
    if (this.readMode === 'auto') return Promise.resolve().then(fill);
    return new Promise((resolve, reject) => {
      this.pendingReads.push({
        vmid,
        pno,
        finish: (error) => {
          if (error) return reject(error);
          fill();
          resolve();
        },
      });
    });
  }

  batchPages(): number {
    return this.batchLimit;
  }

  writePages(pages: readonly PageWrite[]): WriteTicket {
    for (const p of pages) this.writeLog.push({ vmid: p.vmid, pno: p.pno });
    if (this.failed) {
      // As the real store: refused whole, consuming no reservations.
      return { captured: Promise.resolve(), complete: Promise.reject(new PagerError('store-failed')) };
    }
    this.reserved -= pages.length;
    if (this.reserved < 0) throw new Error(`writePages without reservations (${this.reserved})`);
    this.inFlight += pages.length;
    let pending!: PendingWrite;
    const captured = new Promise<void>((resolve) => {
      pending = { pages: [], captured: false, snapshot: [], resolveCaptured: resolve, resolveComplete: () => {}, rejectComplete: () => {} };
    });
    const complete = new Promise<void>((resolve, reject) => {
      pending.resolveComplete = resolve;
      pending.rejectComplete = reject;
    });
    pending.pages = pages.map((p) => ({ ...p, stamp: ++this.clock }));
    this.pendingWrites.push(pending);
    if (this.writeMode === 'auto') setImmediate(() => this.settleWrite(pending));
    return { captured, complete };
  }

  releasePages(vmid: number, pfirst: number, npages: number): void {
    this.checkUsable();
    const stamp = ++this.clock;
    for (let pno = pfirst; pno < pfirst + npages; pno++) this.pages.set(`${vmid}:${pno}`, { data: null, stamp });
  }

  reserveSlots(count: number): boolean {
    if (this.usedSlots + count > this.capacity) return false;
    this.reserved += count;
    return true;
  }

  unreserveSlots(count: number): void {
    this.reserved -= count;
    if (this.reserved < 0) throw new Error(`more reservations given back than taken (${this.reserved})`);
  }

  /** A failed store refuses every change, as the real one does once it has failed permanently. */
  private checkUsable(): void {
    if (this.failed) throw new PagerError('store-failed');
  }

  // ---- Test controls ----------------------------------------------------------------------

  /** Slots in use: pages with data, reservations, and page-outs in flight (copy-on-write). */
  get usedSlots(): number {
    let used = 0;
    for (const p of this.pages.values()) if (p.data) used++;
    return used + this.reserved + this.inFlight;
  }

  /** Copies the batch's bytes (as a device write would) and lets the engine unpin its frames. */
  capture(pending: PendingWrite): void {
    if (pending.captured) return;
    pending.captured = true;
    pending.snapshot = pending.pages.map((p) => Uint8Array.from(p.data));
    pending.resolveCaptured();
  }

  /** Completes a pending batch, successfully or with `error`; newer calls' effects stand. */
  settleWrite(pending: PendingWrite, error: Error | undefined = this.failWrites): void {
    const i = this.pendingWrites.indexOf(pending);
    if (i < 0) throw new Error('write batch settled twice');
    this.pendingWrites.splice(i, 1);
    this.capture(pending);
    this.inFlight -= pending.pages.length;
    if (error) {
      this.reserved += pending.pages.length;
      pending.rejectComplete(error);
      return;
    }
    pending.pages.forEach((p, k) => {
      const key = `${p.vmid}:${p.pno}`;
      const current = this.pages.get(key);
      const deletedAt = this.deleted.get(p.vmid) ?? 0;
      if ((current && current.stamp > p.stamp) || deletedAt > p.stamp) return;
      this.pages.set(key, { data: pending.snapshot[k], stamp: p.stamp });
    });
    pending.resolveComplete();
  }

  settleAllWrites(error?: Error): void {
    while (this.pendingWrites.length > 0) this.settleWrite(this.pendingWrites[0], error);
  }

  settleAllReads(error?: Error): void {
    for (const read of this.pendingReads.splice(0)) read.finish(error);
  }

  /** The page's last complete version as the store holds it (zeros if none). */
  durable(vmid: number, pno: number): Uint8Array {
    return this.pages.get(`${vmid}:${pno}`)?.data ?? new Uint8Array(this.pageSize);
  }
}

import { reopenFd, sharedMemory } from '../native/addon.js';
import { BUCKET_ENTRIES, bucketOf, bucketsFor, HEADER_BYTES, HeaderWord, SHARED_FRAMES_MAGIC, SHARED_FRAMES_VERSION } from '../shared-frames/layout.js';
import { createFrameTable, FRAME_RECORD_BYTES, type FrameTable } from './frame-layout.js';
import { PageState } from './page-state.js';
import { copyBytes } from '../copy-bytes.js';

/** Descriptors of a shared pool, for a trusted client: its frames read-only, its access map writable. */
export interface SharedFramesOffer {
  framesFd: number;
  framesBytes: number;
  accessFd: number;
  accessBytes: number;
}

/**
 * The page frames: `count` page-sized buffers, the frame table that describes them, and the free
 * list threaded through the table's `next` field, all in one SharedArrayBuffer laid out as
 * src/shared-frames/layout.ts says. With `shared`, that memory is a sealed memfd that trusted
 * local clients map read-only (offer()).
 *
 * The free list is a stack: the frame freed last is taken first, so a working set smaller than
 * the pool keeps reusing memory already touched (in cache, and faulted in). Taken first-in
 * first-out, every allocation walked through untouched frames until the whole pool had been used
 * once: a page fault and a kernel page-zeroing per page-in, measured as ~25% fewer cold page-ins
 * per second with a 1,280 MiB pool than with a 256 MiB one.
 *
 * Device I/O reads and writes frame bytes in place through frameBytes(); nothing copies a frame
 * into a fresh Buffer.
 *
 * Readers in other processes see a frame only between publish() and unpublish(), and trust what
 * they copied only if its seq did not move meanwhile: every change of a published frame's bytes
 * goes between changing() and changed().
 */
export class FramePool {
  readonly pageSize: number;
  readonly count: number;
  /** The whole pool: header, frame table, seqs, directory, frames. */
  readonly memory: SharedArrayBuffer;
  /** The frames' bytes; frame f occupies [offsetOf(f), offsetOf(f) + pageSize). */
  readonly bytes: Uint8Array;
  readonly table: FrameTable;
  /** Per frame: odd while unpublished or changing, even while published and stable. */
  readonly seq: Uint32Array;
  /** Per frame: set by clients that copied from it (a reference); the clock hand clears it. */
  readonly accessed: Uint8Array;
  private readonly directory: Uint32Array;
  private readonly buckets: number;
  private readonly framesOffset: number;
  private readonly memfd: number | undefined;
  private readonly accessMemfd: number | undefined;
  /** A page of zeros: TypedArray.fill on shared memory is several times slower than set(). */
  private readonly zeros: Uint8Array;
  private freeHead = -1;
  private free = 0;

  constructor(pageSize: number, count: number, options: { shared?: boolean } = {}) {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`frame count must be a positive integer, got ${count}`);
    this.pageSize = pageSize;
    this.count = count;
    this.buckets = bucketsFor(count);
    const tableOffset = HEADER_BYTES;
    const seqOffset = tableOffset + align(FRAME_RECORD_BYTES * count, 8);
    const directoryOffset = seqOffset + 4 * count;
    this.framesOffset = align(directoryOffset + 4 * BUCKET_ENTRIES * this.buckets, pageSize);
    const total = this.framesOffset + pageSize * count;
    if (options.shared === true) {
      const frames = sharedMemory('pagerd-frames', total);
      const access = sharedMemory('pagerd-frame-access', count);
      this.memfd = frames.fd;
      this.accessMemfd = access.fd;
      this.memory = frames.buffer;
      this.accessed = new Uint8Array(access.buffer);
    } else {
      this.memory = new SharedArrayBuffer(total);
      this.accessed = new Uint8Array(new SharedArrayBuffer(count));
    }
    const { table } = createFrameTable(count, this.memory, tableOffset);
    this.table = table;
    this.seq = new Uint32Array(this.memory, seqOffset, count).fill(1);
    this.directory = new Uint32Array(this.memory, directoryOffset, BUCKET_ENTRIES * this.buckets);
    this.bytes = new Uint8Array(this.memory, this.framesOffset, pageSize * count);
    const header = new Uint32Array(this.memory, 0, HEADER_BYTES / 4);
    header[HeaderWord.VERSION] = SHARED_FRAMES_VERSION;
    header[HeaderWord.PAGE_SIZE] = pageSize;
    header[HeaderWord.COUNT] = count;
    header[HeaderWord.BUCKETS] = this.buckets;
    header[HeaderWord.SEQ] = seqOffset;
    header[HeaderWord.VMID] = table.vmid.byteOffset;
    header[HeaderWord.PNO] = table.pno.byteOffset;
    header[HeaderWord.DIRECTORY] = directoryOffset;
    header[HeaderWord.FRAMES] = this.framesOffset;
    header[HeaderWord.MAGIC] = SHARED_FRAMES_MAGIC;
    this.zeros = new Uint8Array(pageSize);
    for (let f = count - 1; f >= 0; f--) this.pushFree(f); // frame 0 on top
  }

  get freeCount(): number {
    return this.free;
  }

  /** A view of frame f's bytes (a constant-size view object; the bytes are not copied). */
  frameBytes(f: number): Uint8Array {
    return this.bytes.subarray(f * this.pageSize, (f + 1) * this.pageSize);
  }

  /** Fills frame f with zeros. */
  zero(f: number): void {
    copyBytes(this.bytes, f * this.pageSize, this.zeros);
  }

  /** Byte offset of frame f in `bytes`. */
  offsetOf(f: number): number {
    return f * this.pageSize;
  }

  /**
   * New descriptors for a trusted client (the caller passes them on and closes them): the pool
   * reopened read-only, so the client can map it only read-only, and the access map, writable.
   * Both memfds are sealed: no holder can shrink or grow them. Undefined if the pool is not shared.
   */
  offer(): SharedFramesOffer | undefined {
    if (this.memfd === undefined || this.accessMemfd === undefined) return undefined;
    return { framesFd: reopenFd(this.memfd, false), framesBytes: this.memory.byteLength, accessFd: reopenFd(this.accessMemfd, true), accessBytes: this.count };
  }

  /**
   * Frame f now holds a usable page whose bytes and owner (table vmid, pno) are set: readers may
   * copy it. Lists it in the directory (unless its bucket is full) and makes its seq even.
   */
  publish(f: number): void {
    if ((this.seq[f] & 1) === 0) return;
    const base = bucketOf(this.table.vmid[f], this.table.pno[f], this.buckets) * BUCKET_ENTRIES;
    for (let i = base; i < base + BUCKET_ENTRIES; i++) {
      if (this.directory[i] === 0) {
        this.directory[i] = f + 1;
        break;
      }
    }
    Atomics.add(this.seq, f, 1);
  }

  /** Frame f's page is going (unlinked): readers must no longer trust it. Call before its owner changes. */
  unpublish(f: number): void {
    if ((this.seq[f] & 1) !== 0) return;
    Atomics.add(this.seq, f, 1);
    const base = bucketOf(this.table.vmid[f], this.table.pno[f], this.buckets) * BUCKET_ENTRIES;
    for (let i = base; i < base + BUCKET_ENTRIES; i++) {
      if (this.directory[i] === f + 1) this.directory[i] = 0;
    }
  }

  /**
   * Frame f's bytes are about to change (a write): a reader copying now will see its seq move.
   * True if the frame was published: then call changed(f) once the change is done.
   */
  changing(f: number): boolean {
    if ((this.seq[f] & 1) !== 0) return false;
    Atomics.add(this.seq, f, 1);
    return true;
  }

  /** The change that changing(f) answered true for is done: the frame is published again. */
  changed(f: number): void {
    Atomics.add(this.seq, f, 1);
  }

  /** Takes a frame off the free list, or answers -1 when the list is empty. The frame is ABSENT and unflagged. */
  takeFree(): number {
    const f = this.freeHead;
    if (f < 0) return -1;
    this.freeHead = this.table.next[f];
    this.table.next[f] = -1;
    this.free--;
    return f;
  }

  /** Puts an ABSENT frame on top of the free list and clears its record. */
  pushFree(f: number): void {
    const t = this.table;
    if (t.state[f] !== PageState.ABSENT) throw new Error(`frame ${f} freed while not absent`);
    this.unpublish(f);
    t.flags[f] = 0;
    t.pins[f] = 0;
    t.queuedSeq[f] = 0;
    t.pageOutStartedMs[f] = 0;
    t.next[f] = this.freeHead;
    this.freeHead = f;
    this.free++;
  }
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/**
 * The word layout of the frame table: one record per page frame, stored column-wise as typed
 * arrays carved out of one SharedArrayBuffer. Every field lists who may change it.
 *
 * All fields are changed only on the daemon's main thread; the buffer is shared so that I/O and
 * statistics readers in other threads can see it, and with shared frames (src/shared-frames/)
 * local clients in other processes read `vmid` and `pno`, trusting them only between two equal
 * even readings of the frame's seq (FramePool.publish). 32 bytes per frame.
 */

export const FRAME_FIELDS = {
  /** Time (ms since the epoch) the frame's last page-out started; 0 if never. Set by page-out start. */
  pageOutStartedMs: Float64Array,
  /** I/O level sequence number of a forced page-out queued behind the one in flight; 0 if none. */
  queuedSeq: Float64Array,
  /** Segment owning the page. Set when the frame is linked into a page table. */
  vmid: Uint32Array,
  /** Page number within the segment. Set with vmid. */
  pno: Uint32Array,
  /** Next frame on the free list, or -1. Changed only by the free list. */
  next: Int32Array,
  /** Count of device operations reading or filling the frame's bytes; writers wait for 0. */
  pins: Uint16Array,
  /** PageState; changed only through Vmm.transition(). */
  state: Uint8Array,
  /** FrameFlag bits. */
  flags: Uint8Array,
} as const;

/** Bits of the flags field. */
export const FrameFlag = {
  /** Reference bit: set on every access, cleared by the clock hand and vm_write. */
  REFERENCED: 1 << 0,
  /** Unlinked from its page table: free the frame when its I/O completes, whatever the outcome. */
  DISCARD: 1 << 1,
  /** Still linked: free the frame when its I/O completes successfully (flush, laundry). */
  FREE_AT_IO_DONE: 1 << 2,
  /** Modified again while in page-out: the bytes differ from what is being written. */
  REMODIFIED: 1 << 3,
  /** A forced page-out is queued behind the current one (its sequence number is in queuedSeq). */
  PAGEOUT_AGAIN: 1 << 4,
  /** Page of a large-page segment: pinned in memory, never stolen or paged out. */
  LOCKED: 1 << 5,
  /** Freed while pinned (a file system may still read it): goes on the free list once unpinned. */
  FREE_WHEN_UNPINNED: 1 << 6,
} as const;

export type FrameTable = { -readonly [K in keyof typeof FRAME_FIELDS]: InstanceType<(typeof FRAME_FIELDS)[K]> };

/** Bytes of frame table per frame. */
export const FRAME_RECORD_BYTES = Object.values(FRAME_FIELDS).reduce((sum, T) => sum + T.BYTES_PER_ELEMENT, 0);

/**
 * Lays out the frame table for `count` frames in `buffer` from `byteOffset` (8-aligned), widest
 * fields first: FRAME_RECORD_BYTES × count bytes.
 */
export function createFrameTable(count: number, buffer: SharedArrayBuffer = new SharedArrayBuffer(FRAME_RECORD_BYTES * count), byteOffset = 0): { buffer: SharedArrayBuffer; table: FrameTable } {
  const table = {} as Record<string, unknown>;
  let offset = byteOffset;
  for (const [name, Type] of Object.entries(FRAME_FIELDS)) {
    const View = Type as unknown as new (buffer: SharedArrayBuffer, byteOffset: number, length: number) => unknown;
    table[name] = new View(buffer, offset, count);
    offset += Type.BYTES_PER_ELEMENT * count;
  }
  return { buffer, table: table as FrameTable };
}

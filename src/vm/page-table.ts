/**
 * A segment's page table: page number -> resident frame. Sparse and compact: pages are grouped in
 * chunks of 1024 entries (an Int32Array of frame + 1, 0 meaning "no frame"), and a chunk exists
 * only while one of its pages has a frame. Pages without a frame cost nothing here; whether they
 * have a backing slot is the store's business.
 */
const CHUNK_SHIFT = 10;
const CHUNK_PAGES = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK_PAGES - 1;

interface Chunk {
  frames: Int32Array;
  used: number;
}

export class PageTable {
  private readonly chunks = new Map<number, Chunk>();
  private linked = 0;

  /** Number of pages that have a frame. */
  get size(): number {
    return this.linked;
  }

  /** The frame holding page `pno`, or -1. */
  get(pno: number): number {
    const chunk = this.chunks.get(Math.floor(pno / CHUNK_PAGES));
    return chunk === undefined ? -1 : chunk.frames[pno & CHUNK_MASK] - 1;
  }

  /** Links page `pno` to frame f; the page must have no frame. */
  set(pno: number, f: number): void {
    const key = Math.floor(pno / CHUNK_PAGES);
    let chunk = this.chunks.get(key);
    if (chunk === undefined) {
      chunk = { frames: new Int32Array(CHUNK_PAGES), used: 0 };
      this.chunks.set(key, chunk);
    }
    const i = pno & CHUNK_MASK;
    if (chunk.frames[i] !== 0) throw new Error(`page ${pno} already has frame ${chunk.frames[i] - 1}`);
    chunk.frames[i] = f + 1;
    chunk.used++;
    this.linked++;
  }

  /** Unlinks page `pno` from its frame; the page must have one. */
  delete(pno: number): void {
    const key = Math.floor(pno / CHUNK_PAGES);
    const chunk = this.chunks.get(key);
    const i = pno & CHUNK_MASK;
    if (chunk === undefined || chunk.frames[i] === 0) throw new Error(`page ${pno} has no frame`);
    chunk.frames[i] = 0;
    this.linked--;
    if (--chunk.used === 0) this.chunks.delete(key);
  }

  /**
   * Calls visit(pno, frame) for every page in [first, end) that has a frame, in page order.
   * `visit` may unlink the page it is given (not others).
   */
  forEachInRange(first: number, end: number, visit: (pno: number, f: number) => void): void {
    if (end <= first) return;
    const firstKey = Math.floor(first / CHUNK_PAGES);
    const lastKey = Math.floor((end - 1) / CHUNK_PAGES);
    const keys =
      lastKey - firstKey + 1 <= this.chunks.size
        ? range(firstKey, lastKey + 1)
        : [...this.chunks.keys()].filter((k) => k >= firstKey && k <= lastKey).sort((a, b) => a - b);
    for (const key of keys) {
      const chunk = this.chunks.get(key);
      if (chunk === undefined) continue;
      const base = key * CHUNK_PAGES;
      const from = Math.max(first, base) - base;
      const to = Math.min(end, base + CHUNK_PAGES) - base;
      for (let i = from; i < to; i++) {
        const entry = chunk.frames[i];
        if (entry !== 0) visit(base + i, entry - 1);
      }
    }
  }

  /** Bytes of JavaScript memory the table's chunks hold (for bookkeeping measurements). */
  get chunkBytes(): number {
    return this.chunks.size * CHUNK_PAGES * Int32Array.BYTES_PER_ELEMENT;
  }
}

function* range(from: number, to: number): Generator<number> {
  for (let k = from; k < to; k++) yield k;
}

import { allocBuffer } from './buffer-slab.js';

/**
 * Buffers handed back for reuse, by size: a large message (a strategy write of 64 pages is 256 KiB)
 * taken from here costs no fresh allocation, none of its pages' first-touch faults and nothing for
 * the GC. Holds at most `maxBytes`; anything else is allocated as usual (allocBuffer).
 */
export class RecycledBuffers {
  private readonly bySize = new Map<number, Buffer[]>();
  private held = 0;

  constructor(private readonly maxBytes: number) {}

  take(size: number): Buffer {
    const kept = this.bySize.get(size)?.pop();
    if (kept === undefined) return allocBuffer(size);
    this.held -= size;
    return kept;
  }

  /** Hands `buffer` back: its owner no longer reads or writes it. Only whole buffers of their own (not views of a shared slab) are kept. */
  give(buffer: Buffer): void {
    if (buffer.byteOffset !== 0 || buffer.length !== buffer.buffer.byteLength || this.held + buffer.length > this.maxBytes) return;
    let list = this.bySize.get(buffer.length);
    if (list === undefined) this.bySize.set(buffer.length, (list = []));
    list.push(buffer);
    this.held += buffer.length;
  }
}

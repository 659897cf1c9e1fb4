import { blobColumn } from './blob-column.js';
import { BrokenSealError } from './page-seal.js';
import type { Database, Statement } from 'better-sqlite3';
import { StatementLog } from './statement-log.js';

/** Slots per row: 2 KiB of bits, small enough to stay inside one 4 KiB SQLite page. */
export const CHUNK_SLOTS = 16384;
const CHUNK_BYTES = CHUNK_SLOTS / 8;

/**
 * The durable list of free slots (below meta.slot_high, referenced by no page), as a bitmap kept
 * in rows of CHUNK_SLOTS bits (set bit = free). A page-out cycle frees and takes thousands of
 * slots, but in a few contiguous runs: it rewrites a few rows, where a row per slot cost two
 * statements a page (~4 µs). Changes are staged, written inside the caller's transaction by
 * `write()`, and become the known state only once `committed()` says the transaction held.
 */
export class FreeSlotMap {
  /** The bitmap as last committed. */
  private readonly bits: Uint8Array;
  /** Chunks changed since the last commit, as whole copies. */
  private staged = new Map<number, Uint8Array>();
  readonly #put: Statement<[number, Uint8Array]>;

  constructor(
    db: Database,
    capacity: number,
    private readonly writes = new StatementLog(),
  ) {
    this.bits = new Uint8Array(Math.ceil(capacity / CHUNK_SLOTS) * CHUNK_BYTES);
    for (const { chunk, bits } of db.prepare<[], { chunk: number; bits: unknown }>('SELECT chunk, bits FROM free_slot_map').all()) {
      const row = blobColumn(bits, () => `free-slot-map row ${chunk}`);
      if (row.length !== CHUNK_BYTES) throw new BrokenSealError(`free-slot-map row ${chunk}`, `is ${row.length} bytes, not ${CHUNK_BYTES}`);
      if (chunk * CHUNK_BYTES < this.bits.length) this.bits.set(row, chunk * CHUNK_BYTES); // the map is whole chunks
    }
    this.#put = db.prepare('INSERT OR REPLACE INTO free_slot_map (chunk, bits) VALUES (?, ?)');
  }

  /** The committed bitmap (read-only use: the allocator starts from a copy). */
  get bitmap(): Uint8Array {
    return this.bits;
  }

  /** Stages the slots as free (or not). */
  mark(slots: readonly number[], free: boolean): void {
    for (const slot of slots) {
      const chunk = Math.floor(slot / CHUNK_SLOTS);
      let copy = this.staged.get(chunk);
      if (copy === undefined) {
        copy = this.bits.slice(chunk * CHUNK_BYTES, (chunk + 1) * CHUNK_BYTES);
        this.staged.set(chunk, copy);
      }
      const i = (slot % CHUNK_SLOTS) >> 3;
      const bit = 1 << (slot & 7);
      copy[i] = free ? copy[i] | bit : copy[i] & ~bit;
    }
  }

  /** Writes the staged chunks (inside the caller's transaction). */
  write(): void {
    for (const [chunk, copy] of this.staged) this.writes.run(this.#put, chunk, copy);
  }

  /** The transaction committed: the staged chunks are the state now. */
  committed(): void {
    for (const [chunk, copy] of this.staged) this.bits.set(copy, chunk * CHUNK_BYTES);
    this.staged.clear();
  }

  /** The transaction failed: forget what was staged. */
  abandoned(): void {
    this.staged.clear();
  }
}

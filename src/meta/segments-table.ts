import type { Database, Statement } from 'better-sqlite3';
import type { SegmentRecord } from '../vm/segment.js';

/** The segments table's statements. */
export class SegmentsTable {
  readonly #all: Statement<[], SegmentRecord>;
  readonly #insert: Statement<[number, number, number, number, number, number]>;
  readonly #delete: Statement<[number]>;
  readonly #count: Statement<[], { n: number }>;
  readonly #addMapped: Statement<[number, number]>;
  readonly #mapped: Statement<[], { vmid: number; mapped: number }>;

  constructor(db: Database) {
    this.#all = db.prepare('SELECT vmid, type, options, extent, uid, gid, mode FROM segments ORDER BY vmid');
    this.#insert = db.prepare('INSERT INTO segments (type, options, extent, uid, gid, mode) VALUES (?, ?, ?, ?, ?, ?)');
    this.#delete = db.prepare('DELETE FROM segments WHERE vmid = ?');
    this.#count = db.prepare('SELECT count(*) AS n FROM segments');
    this.#addMapped = db.prepare('UPDATE segments SET mapped = mapped + ? WHERE vmid = ?');
    this.#mapped = db.prepare('SELECT vmid, mapped FROM segments');
  }

  all(): SegmentRecord[] {
    return this.#all.all();
  }

  insert(r: Omit<SegmentRecord, 'vmid'>): number {
    return Number(this.#insert.run(r.type, r.options, r.extent, r.uid, r.gid, r.mode).lastInsertRowid);
  }

  delete(vmid: number): void {
    this.#delete.run(vmid);
  }

  /** Counts `delta` more (or fewer) mapped pages for the segment (inside the caller's transaction). */
  addMapped(vmid: number, delta: number): void {
    this.#addMapped.run(delta, vmid);
  }

  /** Each segment's recorded count of mapped pages. */
  mappedCounts(): Map<number, number> {
    return new Map(this.#mapped.all().map(({ vmid, mapped }) => [vmid, mapped]));
  }

  count(): number {
    return this.#count.get()!.n;
  }
}

import type { Database, Statement } from 'better-sqlite3';

/** Where a page's last complete version lives. */
export interface PageLocation {
  slot: number;
  checksum: number;
  version: number;
}

/** The page map's statements: (vmid, pno) -> slot, checksum, version. Read on demand, never loaded whole. */
export class PagesTable {
  readonly #get: Statement<[number, number], [number, number, number]>;
  readonly #put: Statement<[number, number, number, number]>;
  readonly #slotsInRange: Statement<[number, number, number], { slot: number }>;
  readonly #deleteRange: Statement<[number, number, number]>;
  readonly #slotsOfSegment: Statement<[number], { slot: number }>;
  readonly #deleteSegment: Statement<[number]>;
  readonly #count: Statement<[], { n: number }>;
  readonly #shared: Statement<[], { slot: number }>;
  readonly #scan: Statement<[number, number, number], { vmid: number; pno: number; slot: number; checksum: number }>;

  constructor(db: Database) {
    // Raw rows: the lookup is on every page-in and every page-out commit; no object per row.
    this.#get = db.prepare<[number, number], [number, number, number]>('SELECT slot, checksum, version FROM pages WHERE vmid = ? AND pno = ?').raw();
    this.#put = db.prepare(`
      INSERT INTO pages (vmid, pno, slot, checksum, version) VALUES (?, ?, ?, ?, 1)
      ON CONFLICT (vmid, pno) DO UPDATE SET slot = excluded.slot, checksum = excluded.checksum, version = version + 1`);
    this.#slotsInRange = db.prepare('SELECT slot FROM pages WHERE vmid = ? AND pno >= ? AND pno < ?');
    this.#deleteRange = db.prepare('DELETE FROM pages WHERE vmid = ? AND pno >= ? AND pno < ?');
    this.#slotsOfSegment = db.prepare('SELECT slot FROM pages WHERE vmid = ?');
    this.#deleteSegment = db.prepare('DELETE FROM pages WHERE vmid = ?');
    this.#count = db.prepare('SELECT count(*) AS n FROM pages');
    this.#shared = db.prepare('SELECT slot FROM pages GROUP BY slot HAVING count(*) > 1');
    this.#scan = db.prepare('SELECT vmid, pno, slot, checksum FROM pages WHERE (vmid, pno) > (?, ?) ORDER BY vmid, pno LIMIT ?');
  }

  get(vmid: number, pno: number): PageLocation | undefined {
    const row = this.#get.get(vmid, pno);
    return row === undefined ? undefined : { slot: row[0], checksum: row[1], version: row[2] };
  }

  /** Points the page at a slot (inside the caller's transaction). */
  put(vmid: number, pno: number, slot: number, checksum: number): void {
    this.#put.run(vmid, pno, slot, checksum);
  }

  /** Forgets pages [first, end) of a segment; answers the slots they held. */
  deleteRange(vmid: number, first: number, end: number): number[] {
    const slots = this.#slotsInRange.all(vmid, first, end).map((r) => r.slot);
    if (slots.length > 0) this.#deleteRange.run(vmid, first, end);
    return slots;
  }

  /** Forgets every page of a segment; answers the slots they held. */
  deleteSegment(vmid: number): number[] {
    const slots = this.#slotsOfSegment.all(vmid).map((r) => r.slot);
    this.#deleteSegment.run(vmid);
    return slots;
  }

  count(): number {
    return this.#count.get()!.n;
  }

  /** Slots that more than one page points at (must be none). */
  sharedSlots(): number[] {
    return this.#shared.all().map((r) => r.slot);
  }

  /** Up to `limit` mapped pages after (vmid, pno), in order (for scrubbing). */
  after(vmid: number, pno: number, limit: number): { vmid: number; pno: number; slot: number; checksum: number }[] {
    return this.#scan.all(vmid, pno, limit);
  }
}

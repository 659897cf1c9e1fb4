import type { Database, Statement } from 'better-sqlite3';
import type { SegmentRecord } from '../vm/segment.js';
import { BrokenSealError, type PageSeal } from './page-seal.js';
import { StatementLog } from './statement-log.js';

/** The fields of a segment's record its seal covers, in order. */
export const SEGMENT_FIELDS = ['vmid', 'type', 'options', 'extent', 'uid', 'gid', 'mode'] as const;

/**
 * The segments table's statements. Each record carries a seal of its fields (PageSeal.ofRecord),
 * checked as the records are loaded at open: a flipped owner or mode bit would otherwise hand a
 * segment to another user.
 */
export class SegmentsTable {
  readonly #all: Statement<[], SegmentRecord & { seal: number }>;
  readonly #insert: Statement<[number, number, number, number, number, number], { vmid: number }>;
  readonly #setSeal: Statement<[number, number]>;
  readonly #delete: Statement<[number]>;
  readonly #count: Statement<[], { n: number }>;
  readonly #addMapped: Statement<[number, number]>;
  readonly #mapped: Statement<[], { vmid: number; mapped: number }>;

  constructor(
    private readonly db: Database,
    private readonly seal: PageSeal,
    private readonly writes = new StatementLog(),
  ) {
    this.#all = db.prepare(`SELECT ${SEGMENT_FIELDS.join(', ')}, seal FROM segments ORDER BY vmid`);
    this.#insert = db.prepare('INSERT INTO segments (type, options, extent, uid, gid, mode) VALUES (?, ?, ?, ?, ?, ?) RETURNING vmid');
    this.#setSeal = db.prepare('UPDATE segments SET seal = ? WHERE vmid = ?');
    this.#delete = db.prepare('DELETE FROM segments WHERE vmid = ?');
    this.#count = db.prepare('SELECT count(*) AS n FROM segments');
    this.#addMapped = db.prepare('UPDATE segments SET mapped = mapped + ? WHERE vmid = ?');
    this.#mapped = db.prepare('SELECT vmid, mapped FROM segments');
  }

  /** Every segment's record; throws BrokenSealError for one that fails its seal. */
  all(): SegmentRecord[] {
    return this.#all.all().map(({ seal, ...record }) => {
      if (seal !== this.sealOf(record)) throw new BrokenSealError(`the record of segment ${record.vmid}`);
      return record;
    });
  }

  /** Adds a record, sealed, in one transaction; answers its vmid. */
  insert(r: Omit<SegmentRecord, 'vmid'>): number {
    return this.db.transaction(() => {
      const { vmid } = this.#insert.get(r.type, r.options, r.extent, r.uid, r.gid, r.mode)!;
      this.#setSeal.run(this.sealOf({ vmid, ...r }), vmid);
      return vmid;
    })();
  }

  private sealOf(record: SegmentRecord): number {
    return this.seal.ofRecord(SEGMENT_FIELDS.map((field) => record[field]));
  }
  delete(vmid: number): void {
    this.#delete.run(vmid);
  }

  /** Counts `delta` more (or fewer) mapped pages for the segment (inside the caller's transaction). */
  addMapped(vmid: number, delta: number): void {
    this.writes.run(this.#addMapped, delta, vmid);
  }

  /** Each segment's recorded count of mapped pages. */
  mappedCounts(): Map<number, number> {
    return new Map(this.#mapped.all().map(({ vmid, mapped }) => [vmid, mapped]));
  }

  count(): number {
    return this.#count.get()!.n;
  }
}

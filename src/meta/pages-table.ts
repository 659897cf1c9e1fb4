import type { Database, Statement } from 'better-sqlite3';
import { StatementLog } from './statement-log.js';
import { crc32c } from '../native/addon.js';
import { blobColumn } from './blob-column.js';
import { BrokenSealError, type PageSeal } from './page-seal.js';

/** Where a page's last complete version lives. */
export interface PageLocation {
  slot: number;
  checksum: number;
}

/** A page pointed at a new slot. */
export interface PageMapping extends PageLocation {
  vmid: number;
  pno: number;
}

/** What putMany answers for an entry: where its page was before, or that a later entry replaced it. */
export type Previous = PageLocation | undefined | 'superseded';

/** Pages per row of the page map. */
export const RUN_PAGES = 32;
/** Bytes per page in a row: u32 slot + 1 (0: not mapped), u32 seal (page-seal.ts). Little-endian. */
export const PAGE_ENTRY_BYTES = 8;

type Row = { run: number; entries: Buffer; seal: number };

/** Rows kept in memory for lookups (FIFO): 8,192 rows cover 262,144 pages in ~3 MB. */
const CACHED_ROWS = 8192;
/** Cache keys are vmid × 2^27 + run (a run is below 2^27: pno < 2^32); larger vmids are not cached. */
const RUN_KEYS = 2 ** 27;
const CACHEABLE_VMIDS = 2 ** 26;

/**
 * The page map, (vmid, pno) -> slot and checksum, in rows of RUN_PAGES consecutive pages: a
 * page-out cycle of n pages rewrites a row per run it touches instead of a B-tree entry per page
 * (SQLite's per-row work, ~5–7 µs, was most of a page-out). Read on demand, never loaded whole;
 * the rows used last are kept in memory (a lookup through SQLite costs ~4 µs of a page-in). This
 * class writes every row, so it keeps them current; a transaction that rolls back must call
 * forgetCached(). A page with no entry reads as zeros.
 *
 * Each row carries a seal of its key and entries (PageSeal.ofRow), checked whenever a row is read
 * from SQLite: a row that a flipped bit moved or changed throws BrokenSealError instead of
 * answering (or freeing) the slots it names. SQLite checksums only its WAL frames.
 */
export class PagesTable {
  readonly #getRow: Statement<[number, number], { entries: Buffer; seal: number }>;
  readonly #putRow: Statement<[number, number, Uint8Array, number, number]>;
  readonly #deleteRow: Statement<[number, number]>;
  readonly #rowsInRange: Statement<[number, number, number], Row>;
  readonly #rowsOfSegment: Statement<[number], Row>;
  readonly #deleteSegment: Statement<[number]>;
  readonly #count: Statement<[], number | null>;
  readonly #rowsAfter: Statement<[number, number, number], Row & { vmid: number }>;
  readonly #allRows: Statement<[], Row & { vmid: number }>;
  readonly #rawRowsAfter: Statement<[unknown, unknown, number], unknown[]>;
  readonly #rawRowsFirst: Statement<[number], unknown[]>;
  /** Mapped pages gained (or lost) per segment by the rows written since takeCountChanges(). */
  readonly #countChanges = new Map<number, number>();
  /**
   * Rows written by a recorded transaction not yet committed (by "vmid:run"): lookups find them
   * here, never evicted, until rowsCommitted() or forgetCached(). A row evicted from the cache and
   * read from SQLite meanwhile would be the old one, and stay cached after the commit.
   */
  readonly #uncommitted = new Map<string, { vmid: number; run: number; entries: Buffer | null }>();
  /** Rows by cache key; null: the row does not exist. */
  readonly #cached = new Map<number, Buffer | null>();

  constructor(
    db: Database,
    private readonly seal: PageSeal,
    private readonly writes = new StatementLog(),
  ) {
    this.#getRow = db.prepare('SELECT entries, seal FROM page_map WHERE vmid = ? AND run = ?');
    this.#putRow = db.prepare('INSERT OR REPLACE INTO page_map (vmid, run, entries, mapped, seal) VALUES (?, ?, ?, ?, ?)');
    this.#deleteRow = db.prepare('DELETE FROM page_map WHERE vmid = ? AND run = ?');
    this.#rowsInRange = db.prepare('SELECT run, entries, seal FROM page_map WHERE vmid = ? AND run >= ? AND run <= ?');
    this.#rowsOfSegment = db.prepare('SELECT run, entries, seal FROM page_map WHERE vmid = ?');
    this.#deleteSegment = db.prepare('DELETE FROM page_map WHERE vmid = ?');
    this.#count = db.prepare<[], number | null>('SELECT sum(mapped) FROM page_map').pluck();
    this.#rowsAfter = db.prepare('SELECT vmid, run, entries, seal FROM page_map WHERE (vmid, run) >= (?, ?) ORDER BY vmid, run LIMIT ?');
    this.#allRows = db.prepare('SELECT vmid, run, entries, seal FROM page_map');
    this.#rawRowsFirst = db.prepare<[number], unknown[]>('SELECT vmid, run, entries, mapped, seal FROM page_map ORDER BY vmid, run LIMIT ?').raw();
    this.#rawRowsAfter = db.prepare<[unknown, unknown, number], unknown[]>('SELECT vmid, run, entries, mapped, seal FROM page_map WHERE (vmid, run) > (?, ?) ORDER BY vmid, run LIMIT ?').raw();
  }

  /** The seal a row with this key and these entries carries. */
  rowSeal(vmid: number, run: number, entries: Uint8Array): number {
    return this.seal.ofRow(crc32c(entries), vmid, run);
  }

  /** A row's entries, once its seal is checked (throws BrokenSealError if it does not match). */
  private checked(vmid: number, run: number, entries: unknown, seal: unknown): Buffer {
    const row = (): string => `page-map row (segment ${vmid}, run ${run})`;
    const bytes = blobColumn(entries, row);
    if (seal !== this.rowSeal(vmid, run, bytes)) throw new BrokenSealError(row());
    return bytes;
  }

  /** Where the page map puts a page; throws BrokenSealError if its row fails its seal. */
  get(vmid: number, pno: number): PageLocation | undefined {
    const entries = this.row(vmid, Math.floor(pno / RUN_PAGES));
    if (entries === null) return undefined;
    const at = (pno % RUN_PAGES) * PAGE_ENTRY_BYTES;
    const slot = entries.readUInt32LE(at);
    return slot === 0 ? undefined : { slot: slot - 1, checksum: entries.readUInt32LE(at + 4) };
  }

  /**
   * Points each page at its slot (inside the caller's transaction). Answers, entry by entry, where
   * the page was before the call (undefined: nowhere). A page listed twice ends at its later slot:
   * the later entry answers where the page was before the call, the earlier one 'superseded'.
   */
  putMany(pages: readonly PageMapping[]): Previous[] {
    const previous: Previous[] = new Array(pages.length);
    const latest = new Array<number>(RUN_PAGES);
    for (const group of byRow(pages)) {
      const { vmid, pno } = pages[group[0]];
      const run = Math.floor(pno / RUN_PAGES);
      const entries = this.rowCopy(vmid, run);
      const before = mappedIn(entries);
      let seen = 0;
      for (const i of group) {
        const p = pages[i];
        const index = p.pno % RUN_PAGES;
        const at = index * PAGE_ENTRY_BYTES;
        if ((seen & (1 << index)) !== 0) {
          previous[i] = previous[latest[index]];
          previous[latest[index]] = 'superseded';
        } else {
          const old = entries.readUInt32LE(at);
          previous[i] = old === 0 ? undefined : { slot: old - 1, checksum: entries.readUInt32LE(at + 4) };
        }
        seen |= 1 << index;
        latest[index] = i;
        entries.writeUInt32LE(p.slot + 1, at);
        entries.writeUInt32LE(p.checksum, at + 4);
      }
      this.writeRow(vmid, run, entries, before);
    }
    return previous;
  }

  /** Makes each page read as zeros again (inside the caller's transaction), a row write per row touched. */
  unmapMany(pages: readonly { vmid: number; pno: number }[]): void {
    for (const group of byRow(pages)) {
      const { vmid, pno } = pages[group[0]];
      const run = Math.floor(pno / RUN_PAGES);
      const entries = this.rowCopy(vmid, run);
      const before = mappedIn(entries);
      for (const i of group) {
        const at = (pages[i].pno % RUN_PAGES) * PAGE_ENTRY_BYTES;
        entries.fill(0, at, at + PAGE_ENTRY_BYTES);
      }
      this.writeRow(vmid, run, entries, before);
    }
  }

  /** Forgets pages [first, end) of a segment; answers the slots they held. */
  deleteRange(vmid: number, first: number, end: number): number[] {
    if (end <= first) return [];
    const slots: number[] = [];
    for (const { run, entries, seal } of this.#rowsInRange.all(vmid, Math.floor(first / RUN_PAGES), Math.floor((end - 1) / RUN_PAGES))) {
      this.checked(vmid, run, entries, seal);
      const before = mappedIn(entries);
      const from = Math.max(first - run * RUN_PAGES, 0);
      const to = Math.min(end - run * RUN_PAGES, RUN_PAGES);
      for (let i = from; i < to; i++) {
        const slot = entries.readUInt32LE(i * PAGE_ENTRY_BYTES);
        if (slot === 0) continue;
        slots.push(slot - 1);
        entries.fill(0, i * PAGE_ENTRY_BYTES, (i + 1) * PAGE_ENTRY_BYTES);
      }
      this.writeRow(vmid, run, entries, before);
    }
    return slots;
  }

  /** Forgets every page of a segment; answers the slots they held. */
  deleteSegment(vmid: number): number[] {
    const slots: number[] = [];
    for (const { run, entries, seal } of this.#rowsOfSegment.iterate(vmid)) eachMapped(this.checked(vmid, run, entries, seal), (_i, slot) => slots.push(slot));
    this.#deleteSegment.run(vmid);
    for (const key of this.#cached.keys()) if (Math.floor(key / RUN_KEYS) === vmid) this.#cached.delete(key);
    return slots;
  }

  /** The transaction that changed rows rolled back: what is kept in memory may be ahead of SQLite. */
  forgetCached(): void {
    this.#cached.clear();
    this.#uncommitted.clear();
    this.#countChanges.clear();
  }

  /**
   * The change of each segment's count of mapped pages by the rows written since the last call,
   * for the caller's transaction to record (SegmentsTable.addMapped).
   */
  takeCountChanges(): [number, number][] {
    const changes = [...this.#countChanges].filter(([, delta]) => delta !== 0);
    this.#countChanges.clear();
    return changes;
  }

  /** The recorded transaction's rows are committed: SQLite holds them now. */
  rowsCommitted(): void {
    for (const { vmid, run, entries } of this.#uncommitted.values()) this.cache(vmid, run, entries);
    this.#uncommitted.clear();
  }

  /** A row's entries (read-only), from memory or SQLite; null if the row does not exist. */
  private row(vmid: number, run: number): Buffer | null {
    const pending = this.#uncommitted.get(`${vmid}:${run}`);
    if (pending !== undefined) return pending.entries;
    const key = vmid < CACHEABLE_VMIDS ? vmid * RUN_KEYS + run : -1;
    const known = this.#cached.get(key);
    if (known !== undefined) return known;
    const row = this.#getRow.get(vmid, run);
    const entries = row === undefined ? null : this.checked(vmid, run, row.entries, row.seal);
    this.cache(vmid, run, entries);
    return entries;
  }

  /** A row's entries as a copy to change (all zeros if the row does not exist). */
  private rowCopy(vmid: number, run: number): Buffer {
    const entries = Buffer.alloc(RUN_PAGES * PAGE_ENTRY_BYTES);
    this.row(vmid, run)?.copy(entries);
    return entries;
  }

  /** Stores a changed row (deleted once no page in it is mapped) and keeps it current in memory. */
  private writeRow(vmid: number, run: number, entries: Buffer, mappedBefore: number): void {
    const mapped = mappedIn(entries);
    this.#countChanges.set(vmid, (this.#countChanges.get(vmid) ?? 0) + mapped - mappedBefore);
    if (mapped === 0) this.writes.run(this.#deleteRow, vmid, run);
    else this.writes.run(this.#putRow, vmid, run, entries, mapped, this.rowSeal(vmid, run, entries));
    const kept = mapped === 0 ? null : entries;
    if (this.writes.recording) this.#uncommitted.set(`${vmid}:${run}`, { vmid, run, entries: kept });
    else this.cache(vmid, run, kept);
  }

  private cache(vmid: number, run: number, entries: Buffer | null): void {
    if (vmid >= CACHEABLE_VMIDS) return;
    const key = vmid * RUN_KEYS + run;
    this.#cached.delete(key); // re-inserted last: the newest row is the last to go
    this.#cached.set(key, entries);
    if (this.#cached.size > CACHED_ROWS) this.#cached.delete(this.#cached.keys().next().value!);
  }

  count(): number {
    return this.#count.get() ?? 0;
  }

  /**
   * Slots that more than one page points at (must be none). Slots seen are marked in a bit set of
   * the store's `slotCount` slots: a store of 10 M pages costs 1.25 MB, not a set of 10 M numbers.
   */
  sharedSlots(slotCount: number): number[] {
    const seen = new Uint8Array(Math.ceil(slotCount / 8));
    const shared = new Set<number>();
    for (const { vmid, run, entries, seal } of this.#allRows.iterate()) {
      eachMapped(this.checked(vmid, run, entries, seal), (_i, slot) => {
        const bit = 1 << (slot & 7);
        if (seen[slot >>> 3] & bit) shared.add(slot);
        seen[slot >>> 3] |= bit;
      });
    }
    return [...shared];
  }

  /**
   * Up to `limit` rows after the key `after` (from the first without it), in key order, as raw values (vmid, run, entries,
   * mapped, seal), unchecked: the page-map check reads rows a flipped bit may have made of any type.
   */
  rawRowsAfter(after: readonly [unknown, unknown] | undefined, limit: number): unknown[][] {
    return after === undefined ? this.#rawRowsFirst.all(limit) : this.#rawRowsAfter.all(after[0], after[1], limit);
  }

  /** Up to `limit` mapped pages after (vmid, pno), in order (for scrubbing). */
  after(vmid: number, pno: number, limit: number): { vmid: number; pno: number; slot: number; checksum: number }[] {
    const out: { vmid: number; pno: number; slot: number; checksum: number }[] = [];
    let from = { vmid, run: Math.floor(pno / RUN_PAGES) };
    const rowsAtOnce = Math.ceil(limit / RUN_PAGES) + 1;
    while (out.length < limit) {
      const rows = this.#rowsAfter.all(from.vmid, from.run, rowsAtOnce);
      for (const row of rows) {
        eachMapped(this.checked(row.vmid, row.run, row.entries, row.seal), (i, slot, checksum) => {
          const p = row.run * RUN_PAGES + i;
          if (row.vmid > vmid || p > pno) out.push({ vmid: row.vmid, pno: p, slot, checksum });
        });
      }
      if (rows.length < rowsAtOnce) break;
      const last = rows[rows.length - 1];
      from = { vmid: last.vmid, run: last.run + 1 };
    }
    return out.slice(0, limit);
  }
}

/** Entry indices grouped by the row (segment and run) they fall in, each group in entry order. */
function byRow(pages: readonly { vmid: number; pno: number }[]): number[][] {
  const bySegment = new Map<number, Map<number, number[]>>();
  pages.forEach(({ vmid, pno }, i) => {
    let byRun = bySegment.get(vmid);
    if (byRun === undefined) bySegment.set(vmid, (byRun = new Map()));
    const run = Math.floor(pno / RUN_PAGES);
    const group = byRun.get(run);
    if (group === undefined) byRun.set(run, [i]);
    else group.push(i);
  });
  return [...bySegment.values()].flatMap((byRun) => [...byRun.values()]);
}

function eachMapped(entries: Buffer, visit: (index: number, slot: number, checksum: number) => void): void {
  for (let i = 0; i < RUN_PAGES; i++) {
    const slot = entries.readUInt32LE(i * PAGE_ENTRY_BYTES);
    if (slot !== 0) visit(i, slot - 1, entries.readUInt32LE(i * PAGE_ENTRY_BYTES + 4));
  }
}

function mappedIn(entries: Buffer): number {
  let n = 0;
  for (let i = 0; i < RUN_PAGES; i++) if (entries.readUInt32LE(i * PAGE_ENTRY_BYTES) !== 0) n++;
  return n;
}

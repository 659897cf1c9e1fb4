import { PAGE_ENTRY_BYTES, RUN_PAGES, type PagesTable } from '../meta/pages-table.js';

/** What must hold of every page-map row, and where the check reads them. */
export interface PageMapFacts {
  pages: PagesTable;
  /** Each segment, with the count of mapped pages it records. */
  segments: ReadonlyMap<number, number>;
  high: number;
  slotCount: number;
  isFree(slot: number): boolean;
}

export interface PageMapProblems {
  count: number;
  /** The first few, in words. */
  first: string[];
}

/** Rows read per step: a step is a few milliseconds, so a daemon checking in the background stays responsive. */
const ROWS_PER_STEP = 4096;

/**
 * The check of the page map that must pass before any slot may be reused: every row well formed
 * (its key, its entries, its count of mapped pages) and sealed (its key and entries unchanged), of a segment that exists, each mapped slot
 * below the high water and the slot count, mapped by one page only, and not listed free; and each
 * segment's rows mapping as many pages as the segment records (a row deleted whole). A
 * flipped bit in a row, in the high water or in the free-slot map would otherwise let page-outs
 * overwrite acknowledged pages. SQLite's own checks see none of this.
 *
 * It reads the rows in key order, ROWS_PER_STEP at a time: at 10 M mapped pages reading them takes
 * ~1 s here, more than a start may (docs/durability.md), so the daemon runs it in the background.
 * The map stands still meanwhile: each row is checked against the free-slot state of the moment
 * it is read, nothing maps a slot until the
 * check is done, and releases and deletes wait for it too (a release freeing a slot that a checked
 * row also maps would hide that row's problem).
 */
export class PageMapCheck {
  readonly problems: PageMapProblems = { count: 0, first: [] };
  private readonly seen: Uint8Array;
  /** The key of the last row checked; undefined before the first. */
  private cursor: [unknown, unknown] | undefined;
  private done = false;
  /** Rows checked so far. */
  rows = 0;
  /** Mapped pages counted in each segment's rows so far. */
  private readonly counted = new Map<number, number>();

  constructor(private readonly facts: PageMapFacts) {
    this.seen = new Uint8Array(Math.ceil(facts.slotCount / 8));
  }

  /** Checks the next rows; true once every row is checked. */
  step(): boolean {
    if (this.done) return true;
    const rows = this.facts.pages.rawRowsAfter(this.cursor, ROWS_PER_STEP);
    for (const row of rows) this.checkRow(row);
    this.rows += rows.length;
    if (rows.length > 0) this.cursor = [rows[rows.length - 1][0], rows[rows.length - 1][1]];
    this.done = rows.length < ROWS_PER_STEP;
    if (this.done) this.checkCounts();
    return this.done;
  }

  /** Runs every step at once (pagerd --check, tests). */
  run(): PageMapProblems {
    while (!this.step());
    return this.problems;
  }

  private checkRow([vmid, run, entries, mapped, seal]: unknown[]): void {
    const where = `page-map row (segment ${String(vmid)}, run ${String(run)})`;
    if (!Number.isSafeInteger(vmid) || !Number.isSafeInteger(run) || (run as number) < 0 || (run as number) * RUN_PAGES >= 2 ** 32) {
      return this.problem(`${where} has a malformed key`);
    }
    if (!Buffer.isBuffer(entries) || entries.length !== RUN_PAGES * PAGE_ENTRY_BYTES) return this.problem(`${where} has malformed entries`);
    if (seal !== this.facts.pages.rowSeal(vmid as number, run as number, entries)) this.problem(`${where} fails its seal (moved to another key, or changed, outside pagerd)`);
    const { segments, high, slotCount, isFree } = this.facts;
    if (!segments.has(vmid as number)) this.problem(`${where} belongs to no segment`);
    const limit = Math.min(high, slotCount);
    const seen = this.seen;
    let count = 0;
    for (let i = 0; i < RUN_PAGES; i++) {
      const stored = entries.readUInt32LE(i * PAGE_ENTRY_BYTES);
      if (stored === 0) continue;
      count++;
      const slot = stored - 1;
      const bit = 1 << (slot & 7);
      if (slot < limit && (seen[slot >>> 3] & bit) === 0 && !isFree(slot)) {
        seen[slot >>> 3] |= bit;
        continue;
      }
      const page = `page ${(run as number) * RUN_PAGES + i} of segment ${vmid as number}`;
      if (slot >= limit) this.problem(`${page} maps slot ${slot}, at or past the high water ${high} (slot count ${slotCount})`);
      else if ((seen[slot >>> 3] & bit) !== 0) this.problem(`slot ${slot} is mapped by more than one page (${page} among them)`);
      else this.problem(`${page} maps slot ${slot}, which the free-slot map lists free`);
      if (slot < slotCount) seen[slot >>> 3] |= bit;
    }
    if (mapped !== count) this.problem(`${where} says it maps ${String(mapped)} pages, its entries map ${count}`);
    this.counted.set(vmid as number, (this.counted.get(vmid as number) ?? 0) + count);
  }

  /**
   * Slots below the high water that no row maps and the free-slot map does not list free (once
   * every row is checked): lost to a cleared bit of the map, harmless but never reused unless
   * given back. Nothing else holds a slot while the check runs: no page-out, release or limbo.
   */
  unlistedSlots(): number[] {
    const { high, slotCount, isFree } = this.facts;
    const unlisted: number[] = [];
    for (let slot = 0; slot < Math.min(high, slotCount); slot++) {
      if ((this.seen[slot >>> 3] & (1 << (slot & 7))) === 0 && !isFree(slot)) unlisted.push(slot);
    }
    return unlisted;
  }

  /** Each segment's rows map as many pages as it records: a row lost (or one that strayed in) shows here. */
  private checkCounts(): void {
    for (const [vmid, recorded] of this.facts.segments) {
      const counted = this.counted.get(vmid) ?? 0;
      if (counted !== recorded) this.problem(`segment ${vmid} records ${recorded} mapped pages, its page-map rows map ${counted} (a row lost or misplaced)`);
    }
  }

  private problem(what: string): void {
    if (this.problems.count++ < 5) this.problems.first.push(what);
  }
}

/**
 * Runs a check a step per turn of the event loop, so a daemon serving clients stays responsive
 * (ROWS_PER_STEP rows a step). Resolves with what it found, or undefined if `stopped()` turned
 * true first; rejects with the error of a step that could not read the rows.
 */
export function checkInBackground(check: PageMapCheck, stopped: () => boolean): Promise<PageMapProblems | undefined> {
  return new Promise((resolve, reject) => {
    const step = (): void => {
      if (stopped()) return resolve(undefined);
      let done: boolean;
      try {
        done = check.step();
      } catch (err) {
        return reject(err);
      }
      if (done) resolve(check.problems);
      else setImmediate(step);
    };
    setImmediate(step);
  });
}

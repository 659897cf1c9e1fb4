import { blobColumn } from './blob-column.js';
import { BrokenSealError } from './page-seal.js';
import type { Database, Statement } from 'better-sqlite3';
import type { PageLocation } from './pages-table.js';
import { StatementLog } from './statement-log.js';

/** A page a page-out cycle mapped to a new slot, and where its last complete version was before. */
export interface UnsyncedPage {
  vmid: number;
  pno: number;
  /** undefined: the page had no slot (it read as zeros). */
  previous: PageLocation | undefined;
}

/** Bytes per page in a row: u32 vmid, u32 pno, u32 previous slot + 1 (0: none), u32 previous checksum; little-endian. */
const ENTRY_BYTES = 16;

/**
 * Page-out cycles whose metadata is committed but whose data may not be flushed yet. A cycle's
 * commit runs while its fdatasync is in flight (two syncs at once instead of one after the
 * other), so for a moment the page map may point at slots whose bytes are not durable. Each such
 * cycle has a row here, written in the same transaction as its mappings, listing where each page
 * was before; its old slots stay allocated until the row is gone. The row is deleted by the first
 * transaction after the flush succeeded. At start-up, a row left by a crash is resolved: a page
 * whose new slot fails its checksum goes back to where it was.
 */
export class UnsyncedPageouts {
  readonly #insert: Statement<[number, Buffer]>;
  readonly #delete: Statement<[number]>;
  readonly #all: Statement<[], { cycle: number; entries: unknown }>;
  /** The id the next cycle's row takes (chosen here, not by SQLite: a recorded insert answers no rowid). */
  private nextId: number;

  constructor(
    db: Database,
    private readonly writes = new StatementLog(),
  ) {
    this.#insert = db.prepare('INSERT INTO unsynced_pageouts (cycle, entries) VALUES (?, ?)');
    this.#delete = db.prepare('DELETE FROM unsynced_pageouts WHERE cycle = ?');
    this.#all = db.prepare('SELECT cycle, entries FROM unsynced_pageouts ORDER BY cycle');
    this.nextId = (db.prepare<[], number | null>('SELECT max(cycle) FROM unsynced_pageouts').pluck().get() ?? 0) + 1;
  }

  /** Records a cycle's pages (inside its commit's transaction); answers the cycle's id. */
  add(pages: readonly UnsyncedPage[]): number {
    const entries = Buffer.alloc(pages.length * ENTRY_BYTES);
    pages.forEach(({ vmid, pno, previous }, i) => {
      const at = i * ENTRY_BYTES;
      entries.writeUInt32LE(vmid, at);
      entries.writeUInt32LE(pno, at + 4);
      entries.writeUInt32LE(previous === undefined ? 0 : previous.slot + 1, at + 8);
      entries.writeUInt32LE(previous?.checksum ?? 0, at + 12);
    });
    const id = this.nextId++;
    this.writes.run(this.#insert, id, entries);
    return id;
  }

  delete(cycle: number): void {
    this.writes.run(this.#delete, cycle);
  }

  /** Every cycle still recorded, oldest first. */
  all(): { cycle: number; pages: UnsyncedPage[] }[] {
    return this.#all.all().map(({ cycle, entries: column }) => {
      const entries = blobColumn(column, () => `unsynced page-out row ${cycle}`);
      if (entries.length % ENTRY_BYTES !== 0) throw new BrokenSealError(`unsynced page-out row ${cycle}`, `is ${entries.length} bytes, not whole entries of ${ENTRY_BYTES}`);
      const pages: UnsyncedPage[] = [];
      for (let at = 0; at + ENTRY_BYTES <= entries.length; at += ENTRY_BYTES) {
        const slot = entries.readUInt32LE(at + 8);
        const previous = slot === 0 ? undefined : { slot: slot - 1, checksum: entries.readUInt32LE(at + 12) };
        pages.push({ vmid: entries.readUInt32LE(at), pno: entries.readUInt32LE(at + 4), previous });
      }
      return { cycle, pages };
    });
  }
}

import { blobColumn } from './blob-column.js';
import type { Database } from 'better-sqlite3';
import { CHUNK_SLOTS } from './free-slot-map.js';
import { PageSeal } from './page-seal.js';
import { crc32c } from '../native/addon.js';
import { PAGE_ENTRY_BYTES, RUN_PAGES, type PageMapping } from './pages-table.js';
import { SEGMENT_FIELDS } from './segments-table.js';

/**
 * The metadata schema, as numbered migrations. PRAGMA user_version holds the number of the last
 * one applied; opening a database applies the rest in order, each in its own transaction.
 */
export const MIGRATIONS: readonly ((db: Database) => void)[] = [
  // 1: segments, the page map, free slots, and store facts.
  (db) =>
    db.exec(`
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) WITHOUT ROWID;

      -- AUTOINCREMENT: a vmid is never reused while the store exists.
      CREATE TABLE segments (
        vmid    INTEGER PRIMARY KEY AUTOINCREMENT,
        type    INTEGER NOT NULL,
        options INTEGER NOT NULL,
        extent  INTEGER NOT NULL,
        uid     INTEGER NOT NULL,
        gid     INTEGER NOT NULL,
        mode    INTEGER NOT NULL
      );

      -- A page with no row reads as zeros. slot holds its last complete version.
      CREATE TABLE pages (
        vmid     INTEGER NOT NULL,
        pno      INTEGER NOT NULL,
        slot     INTEGER NOT NULL,
        checksum INTEGER NOT NULL,
        version  INTEGER NOT NULL,
        PRIMARY KEY (vmid, pno)
      ) WITHOUT ROWID;

      -- Slots below meta.slot_high that no page references. Slots at or above it were never used.
      CREATE TABLE free_slots (
        slot INTEGER PRIMARY KEY
      );
    `),
  // 2: free slots as a bitmap in chunks of CHUNK_SLOTS (a row per slot cost two statements per page).
  (db) => {
    db.exec('CREATE TABLE free_slot_map (chunk INTEGER PRIMARY KEY, bits BLOB NOT NULL)');
    const chunks = new Map<number, Uint8Array>();
    for (const slot of db.prepare('SELECT slot FROM free_slots').pluck().iterate() as IterableIterator<number>) {
      const chunk = Math.floor(slot / CHUNK_SLOTS);
      let bits = chunks.get(chunk);
      if (bits === undefined) chunks.set(chunk, (bits = new Uint8Array(CHUNK_SLOTS / 8)));
      bits[(slot % CHUNK_SLOTS) >> 3] |= 1 << (slot & 7);
    }
    const put = db.prepare('INSERT INTO free_slot_map (chunk, bits) VALUES (?, ?)');
    for (const [chunk, bits] of chunks) put.run(chunk, bits);
    db.exec('DROP TABLE free_slots');
  },
  // 3: the page map in rows of RUN_PAGES pages (a B-tree entry per page cost ~6 µs per page-out).
  (db) => {
    db.exec(`
      -- entries: RUN_PAGES × (u32 slot + 1, 0 if not mapped; u32 CRC-32C), little-endian.
      CREATE TABLE page_map (
        vmid    INTEGER NOT NULL,
        run     INTEGER NOT NULL,
        entries BLOB NOT NULL,
        mapped  INTEGER NOT NULL,
        PRIMARY KEY (vmid, run)
      ) WITHOUT ROWID;
    `);
    // Rows built here, not through PagesTable: that class speaks the latest schema.
    const put = db.prepare('INSERT INTO page_map (vmid, run, entries, mapped) VALUES (?, ?, ?, ?)');
    let row: { vmid: number; run: number; entries: Buffer; mapped: number } | undefined;
    for (const { vmid, pno, slot, checksum } of db.prepare('SELECT vmid, pno, slot, checksum FROM pages ORDER BY vmid, pno').all() as PageMapping[]) {
      const run = Math.floor(pno / RUN_PAGES);
      if (row?.vmid !== vmid || row.run !== run) {
        if (row !== undefined) put.run(row.vmid, row.run, row.entries, row.mapped);
        row = { vmid, run, entries: Buffer.alloc(RUN_PAGES * PAGE_ENTRY_BYTES), mapped: 0 };
      }
      row.entries.writeUInt32LE(slot + 1, (pno % RUN_PAGES) * PAGE_ENTRY_BYTES);
      row.entries.writeUInt32LE(checksum, (pno % RUN_PAGES) * PAGE_ENTRY_BYTES + 4);
      row.mapped++;
    }
    if (row !== undefined) put.run(row.vmid, row.run, row.entries, row.mapped);
    db.exec('DROP TABLE pages');
  },
  // 4: page-out cycles committed while their data flush was still in flight (see UnsyncedPageouts).
  (db) =>
    db.exec(`
      -- entries: per page, u32 vmid, u32 pno, u32 previous slot + 1 (0: none), u32 previous CRC-32C.
      CREATE TABLE unsynced_pageouts (
        cycle   INTEGER PRIMARY KEY,
        entries BLOB NOT NULL
      );
    `),
  // 5: checksums become seals, bound to the page's identity (page-seal.ts). XOR-linear: each
  // entry is sealed in place, without reading its slot; the device header goes to format 3 after.
  (db) => {
    const storeId = db.prepare<[], string>("SELECT value FROM meta WHERE key = 'store_id'").pluck().get();
    if (storeId === undefined) return;
    const seal = new PageSeal(storeId);
    const putRow = db.prepare('UPDATE page_map SET entries = ? WHERE vmid = ? AND run = ?');
    for (const { vmid, run, entries: column } of db.prepare('SELECT vmid, run, entries FROM page_map').all() as { vmid: number; run: number; entries: unknown }[]) {
      const entries = blobColumn(column, () => `page-map row (segment ${vmid}, run ${run})`);
      for (let i = 0; i * PAGE_ENTRY_BYTES < entries.length; i++) {
        const at = i * PAGE_ENTRY_BYTES;
        if (entries.readUInt32LE(at) !== 0) entries.writeUInt32LE(seal.of(entries.readUInt32LE(at + 4), vmid, run * RUN_PAGES + i), at + 4);
      }
      putRow.run(entries, vmid, run);
    }
    const putCycle = db.prepare('UPDATE unsynced_pageouts SET entries = ? WHERE cycle = ?');
    for (const { cycle, entries: column } of db.prepare('SELECT cycle, entries FROM unsynced_pageouts').all() as { cycle: number; entries: unknown }[]) {
      const entries = blobColumn(column, () => `unsynced page-out row ${cycle}`);
      for (let at = 0; at + 16 <= entries.length; at += 16) {
        if (entries.readUInt32LE(at + 8) !== 0) entries.writeUInt32LE(seal.of(entries.readUInt32LE(at + 12), entries.readUInt32LE(at), entries.readUInt32LE(at + 4)), at + 12);
      }
      putCycle.run(entries, cycle);
    }
  },
  // 6: each segment records how many of its pages the page map maps, so a lost row is seen.
  (db) =>
    db.exec(`
      ALTER TABLE segments ADD COLUMN mapped INTEGER NOT NULL DEFAULT 0;
      UPDATE segments SET mapped = (SELECT coalesce(sum(mapped), 0) FROM page_map WHERE page_map.vmid = segments.vmid);
    `),
  // 7: page-map rows and segment records carry seals (page-seal.ts): a row moved to another key,
  // or a flipped bit in a row or a record, is seen where SQLite does not look.
  (db) => {
    db.exec(`
      ALTER TABLE page_map ADD COLUMN seal INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE segments ADD COLUMN seal INTEGER NOT NULL DEFAULT 0;
    `);
    const storeId = db.prepare<[], string>("SELECT value FROM meta WHERE key = 'store_id'").pluck().get();
    if (storeId === undefined) return;
    const seal = new PageSeal(storeId);
    const putRow = db.prepare('UPDATE page_map SET seal = ? WHERE vmid = ? AND run = ?');
    for (const { vmid, run, entries } of db.prepare('SELECT vmid, run, entries FROM page_map').all() as { vmid: number; run: number; entries: unknown }[]) {
      putRow.run(seal.ofRow(crc32c(blobColumn(entries, () => `page-map row (segment ${vmid}, run ${run})`)), vmid, run), vmid, run);
    }
    const putRecord = db.prepare('UPDATE segments SET seal = ? WHERE vmid = ?');
    for (const fields of db.prepare(`SELECT ${SEGMENT_FIELDS.join(', ')} FROM segments`).raw().all() as number[][]) {
      putRecord.run(seal.ofRecord(fields), fields[0]);
    }
  },
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** A database a newer pagerd wrote: this one cannot read it (there is no way back). */
export class SchemaTooNewError extends Error {
  constructor(version: number) {
    super(`metadata schema version ${version} is newer than this pagerd understands (${SCHEMA_VERSION}): run the pagerd that wrote it, or restore a backup taken before the upgrade`);
    this.name = 'SchemaTooNewError';
  }
}

/** Applies the migrations the database lacks. Refuses a database newer than this code. */
export function migrate(db: Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) throw new SchemaTooNewError(current);
  for (let v = current; v < SCHEMA_VERSION; v++) {
    db.transaction(() => {
      MIGRATIONS[v](db);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}

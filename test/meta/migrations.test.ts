import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CHUNK_SLOTS, FreeSlotMap } from '../../src/meta/free-slot-map.js';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from '../../src/meta/migrations.js';
import { PagesTable, RUN_PAGES } from '../../src/meta/pages-table.js';

describe('metadata migrations', () => {
  it('carries a version 1 database’s free slots into the free-slot bitmap and its pages into page-map rows', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagerd-migrate-'));
    try {
      const db = new Database(join(dir, 'meta.sqlite'));
      MIGRATIONS[0](db);
      db.pragma('user_version = 1');
      const free = [0, 7, 8, CHUNK_SLOTS - 1, CHUNK_SLOTS, 3 * CHUNK_SLOTS + 5];
      const add = db.prepare('INSERT INTO free_slots (slot) VALUES (?)');
      for (const slot of free) add.run(slot);
      const pages = [
        { vmid: 1, pno: 0, slot: 1, checksum: 0xdeadbeef },
        { vmid: 1, pno: RUN_PAGES - 1, slot: 2, checksum: 2 },
        { vmid: 1, pno: 5 * RUN_PAGES + 3, slot: 3, checksum: 3 },
        { vmid: 2, pno: 0, slot: 4, checksum: 4 },
      ];
      const insert = db.prepare('INSERT INTO pages (vmid, pno, slot, checksum, version) VALUES (?, ?, ?, ?, 1)');
      for (const p of pages) insert.run(p.vmid, p.pno, p.slot, p.checksum);

      migrate(db);
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      const bitmap = new FreeSlotMap(db, 4 * CHUNK_SLOTS).bitmap;
      const marked: number[] = [];
      for (let slot = 0; slot < 4 * CHUNK_SLOTS; slot++) if (bitmap[slot >> 3] & (1 << (slot & 7))) marked.push(slot);
      expect(marked).toEqual(free);
      expect(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name IN ('free_slots', 'pages')").get()).toEqual({ n: 0 });
      const map = new PagesTable(db);
      for (const p of pages) expect(map.get(p.vmid, p.pno)).toEqual({ slot: p.slot, checksum: p.checksum });
      expect(map.get(1, 1)).toBeUndefined();
      expect(map.count()).toBe(pages.length);
      expect(map.after(0, -1, 10)).toEqual(pages);
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

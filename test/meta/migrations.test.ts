import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CHUNK_SLOTS, FreeSlotMap } from '../../src/meta/free-slot-map.js';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from '../../src/meta/migrations.js';
import { PageSeal } from '../../src/meta/page-seal.js';
import { PagesTable, RUN_PAGES } from '../../src/meta/pages-table.js';
import { SegmentsTable } from '../../src/meta/segments-table.js';

describe('metadata migrations', () => {
  it('carries a version 1 database’s free slots into the free-slot bitmap, its pages into sealed page-map rows, and seals its segments', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagerd-migrate-'));
    try {
      const db = new Database(join(dir, 'meta.sqlite'));
      MIGRATIONS[0](db);
      db.pragma('user_version = 1');
      const storeId = '00112233445566778899aabbccddeeff';
      db.prepare("INSERT INTO meta (key, value) VALUES ('store_id', ?)").run(storeId);
      db.exec('INSERT INTO segments (type, options, extent, uid, gid, mode) VALUES (1, 0, 1048576, 1000, 1000, 384), (1, 0, 4096, 0, 0, 384)');
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
      const seal = new PageSeal(storeId);
      expect(new SegmentsTable(db, seal).all().map((s) => [s.vmid, s.uid])).toEqual([[1, 1000], [2, 0]]);
      // Every row is read through its seal: one that migration 7 left unsealed would throw.
      const map = new PagesTable(db, seal);
      for (const p of pages) expect(map.get(p.vmid, p.pno)).toEqual({ slot: p.slot, checksum: seal.of(p.checksum, p.vmid, p.pno) });
      expect(map.get(1, 1)).toBeUndefined();
      expect(map.count()).toBe(pages.length);
      expect(map.after(0, -1, 10)).toEqual(pages.map((p) => ({ ...p, checksum: seal.of(p.checksum, p.vmid, p.pno) })));
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

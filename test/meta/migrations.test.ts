import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CHUNK_SLOTS, FreeSlotMap } from '../../src/meta/free-slot-map.js';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from '../../src/meta/migrations.js';

describe('metadata migrations', () => {
  it('carries a version 1 database’s free slots into the free-slot bitmap', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagerd-migrate-'));
    try {
      const db = new Database(join(dir, 'meta.sqlite'));
      MIGRATIONS[0](db);
      db.pragma('user_version = 1');
      const free = [0, 7, 8, CHUNK_SLOTS - 1, CHUNK_SLOTS, 3 * CHUNK_SLOTS + 5];
      const add = db.prepare('INSERT INTO free_slots (slot) VALUES (?)');
      for (const slot of free) add.run(slot);

      migrate(db);
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      const bitmap = new FreeSlotMap(db, 4 * CHUNK_SLOTS).bitmap;
      const marked: number[] = [];
      for (let slot = 0; slot < 4 * CHUNK_SLOTS; slot++) if (bitmap[slot >> 3] & (1 << (slot & 7))) marked.push(slot);
      expect(marked).toEqual(free);
      expect(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'free_slots'").get()).toEqual({ n: 0 });
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

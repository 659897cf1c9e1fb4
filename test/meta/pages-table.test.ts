import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { migrate } from '../../src/meta/migrations.js';
import { BrokenSealError, PageSeal } from '../../src/meta/page-seal.js';
import { PagesTable, RUN_PAGES } from '../../src/meta/pages-table.js';

const SEAL = new PageSeal('00112233445566778899aabbccddeeff');

function table(): PagesTable {
  return tableAndDatabase().map;
}

function tableAndDatabase(): { map: PagesTable; db: Database.Database } {
  const db = new Database(':memory:');
  migrate(db);
  return { map: new PagesTable(db, SEAL), db };
}

const R = RUN_PAGES;

describe('the page map in rows of RUN_PAGES pages', () => {
  it('answers where each page was, the later of a page listed twice winning', () => {
    const map = table();
    expect(map.putMany([{ vmid: 1, pno: 3, slot: 10, checksum: 1 }, { vmid: 1, pno: R + 1, slot: 11, checksum: 2 }])).toEqual([undefined, undefined]);
    const previous = map.putMany([
      { vmid: 1, pno: 3, slot: 20, checksum: 3 },
      { vmid: 1, pno: 3, slot: 21, checksum: 4 },
      { vmid: 2, pno: 3, slot: 22, checksum: 5 },
    ]);
    expect(previous).toEqual(['superseded', { slot: 10, checksum: 1 }, undefined]);
    expect(map.get(1, 3)).toEqual({ slot: 21, checksum: 4 });
    expect(map.get(2, 3)).toEqual({ slot: 22, checksum: 5 });
    expect(map.get(1, 4)).toBeUndefined();
    expect(map.count()).toBe(3);
    expect(map.sharedSlots(64)).toEqual([]);
    map.putMany([{ vmid: 3, pno: 0, slot: 21, checksum: 6 }]); // a second page on slot 21: corrupt
    expect(map.sharedSlots(64)).toEqual([21]);
  });

  it('a row changed outside it (its seal broken) throws on every read, so a release through it frees no slot it names', () => {
    const { map, db } = tableAndDatabase();
    map.putMany([0, 1, R].map((pno) => ({ vmid: 1, pno, slot: pno + 10, checksum: pno })));
    const entries = db.prepare('SELECT entries FROM page_map WHERE run = 1').pluck().get() as Buffer;
    entries.writeUInt32LE(10 + 1, 0); // page R now names page 0's slot
    db.prepare('UPDATE page_map SET entries = ? WHERE run = 1').run(entries);
    const fresh = new PagesTable(db, SEAL); // reads SQLite, nothing cached
    expect(() => fresh.get(1, R)).toThrow(BrokenSealError);
    expect(() => fresh.deleteRange(1, R, R + 1)).toThrow(BrokenSealError);
    expect(() => fresh.deleteSegment(1)).toThrow(BrokenSealError);
    expect(() => fresh.after(0, -1, 10)).toThrow(BrokenSealError);
    expect(() => fresh.sharedSlots(64)).toThrow(BrokenSealError);
    expect(fresh.get(1, 0)).toEqual({ slot: 10, checksum: 0 });
    expect(fresh.count()).toBe(3);
  });

  it('forgets ranges that start and end inside rows, keeping their neighbours', () => {
    const map = table();
    map.putMany(Array.from({ length: 3 * R }, (_, p) => ({ vmid: 1, pno: p, slot: p, checksum: p })));
    const freed = map.deleteRange(1, R - 2, 2 * R + 2);
    expect(freed.sort((a, b) => a - b)).toEqual(Array.from({ length: R + 4 }, (_, i) => R - 2 + i));
    expect(map.get(1, R - 3)).toEqual({ slot: R - 3, checksum: R - 3 });
    expect(map.get(1, R - 2)).toBeUndefined();
    expect(map.get(1, 2 * R + 1)).toBeUndefined();
    expect(map.get(1, 2 * R + 2)).toEqual({ slot: 2 * R + 2, checksum: 2 * R + 2 });
    expect(map.count()).toBe(2 * R - 4);
    expect(map.deleteSegment(1)).toHaveLength(2 * R - 4);
    expect(map.count()).toBe(0);
  });

  it('unmaps scattered pages a row at a time, dropping rows left empty', () => {
    const { map, db } = tableAndDatabase();
    map.putMany([0, 1, R, 2 * R].map((pno) => ({ vmid: 1, pno, slot: pno, checksum: pno })));
    map.unmapMany([{ vmid: 1, pno: 1 }, { vmid: 1, pno: R }, { vmid: 1, pno: 2 * R }]);
    const fresh = new PagesTable(db, SEAL);
    for (const t of [map, fresh]) {
      expect(t.get(1, 0)).toEqual({ slot: 0, checksum: 0 });
      expect([1, R, 2 * R].map((pno) => t.get(1, pno))).toEqual([undefined, undefined, undefined]);
    }
    expect(map.count()).toBe(1);
    expect(db.prepare('SELECT count(*) FROM page_map').pluck().get()).toBe(1);
  });

  it('answers lookups from the rows it keeps in memory as SQLite would, through changes and a rollback', () => {
    const { map, db } = tableAndDatabase();
    const fresh = (): PagesTable => new PagesTable(db, SEAL); // reads SQLite, nothing cached
    const lookups = (t: PagesTable) => [0, 1, R, 2 * R + 3, 5 * R].flatMap((pno) => [1, 2].map((vmid) => t.get(vmid, pno)));
    expect(map.get(1, 0)).toBeUndefined(); // a missing row, remembered as missing
    map.putMany([0, 1, R, 2 * R + 3].map((pno, i) => ({ vmid: 1, pno, slot: i, checksum: i })));
    map.putMany([{ vmid: 2, pno: 1, slot: 9, checksum: 9 }]);
    expect(lookups(map)).toEqual(lookups(fresh()));
    map.deleteRange(1, 1, R + 1);
    expect(lookups(map)).toEqual(lookups(fresh()));
    map.unmapMany([{ vmid: 1, pno: 2 * R + 3 }]);
    expect(lookups(map)).toEqual(lookups(fresh()));
    map.deleteSegment(2);
    expect(lookups(map)).toEqual(lookups(fresh()));
    expect(() =>
      db.transaction(() => {
        map.putMany([{ vmid: 1, pno: 5 * R, slot: 7, checksum: 7 }]);
        throw new Error('rolled back');
      })(),
    ).toThrow('rolled back');
    map.forgetCached();
    expect(lookups(map)).toEqual(lookups(fresh()));
    expect(map.get(1, 5 * R)).toBeUndefined();
    // Past the cache's bound, the oldest rows are dropped and read again from SQLite.
    map.putMany(Array.from({ length: 9000 }, (_, run) => ({ vmid: 3, pno: run * R, slot: 100 + run, checksum: run })));
    expect(map.get(3, 0)).toEqual({ slot: 100, checksum: 0 });
    expect(map.get(1, 0)).toEqual({ slot: 0, checksum: 0 });
  });

  it('lists pages after a point exactly `limit` at a time, across rows and segments', () => {
    const map = table();
    const pages = [
      ...[0, 1, R - 1, R, 7 * R + 5].map((pno, i) => ({ vmid: 1, pno, slot: i, checksum: 0 })),
      ...[2, 3 * R].map((pno, i) => ({ vmid: 3, pno, slot: 100 + i, checksum: 0 })),
    ];
    map.putMany(pages);
    const seen: number[] = [];
    let after = { vmid: 0, pno: -1 };
    for (;;) {
      const batch = map.after(after.vmid, after.pno, 2);
      seen.push(...batch.map((p) => p.slot));
      if (batch.length < 2) break;
      after = batch[1];
    }
    expect(seen).toEqual(pages.map((p) => p.slot));
  });
});

import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { V_WORKING } from '../../src/constants.js';
import { CHUNK_SLOTS } from '../../src/meta/free-slot-map.js';
import { RUN_PAGES } from '../../src/meta/pages-table.js';
import { PersistentStore, StoreCorruptError } from '../../src/store/persistent-store.js';
import { openStore, resealRows, storeDir, storeOptions } from '../support/store-files.js';

const PAGE = 4096;

/** A closed store with pages 0..7 of one segment written; answers its directory and the segment. */
async function storeWithPages(): Promise<{ dir: string; vmid: number }> {
  const dir = storeDir();
  const store = await openStore(dir, { createBytes: 64 * PAGE });
  const vmid = await store.createSegment({ type: V_WORKING, options: 0, extent: 2 * RUN_PAGES * PAGE, uid: 1, gid: 1, mode: 0o600 });
  expect(store.reserveSlots(8)).toBe(true);
  await store.writePages(Array.from({ length: 8 }, (_, pno) => ({ vmid, pno, data: new Uint8Array(PAGE).fill(pno + 1) }))).complete;
  await store.close();
  return { dir, vmid };
}

/** Changes the stopped store's database as a flipped bit or an operator's mistake would. */
function corrupt(dir: string, change: (db: Database.Database) => void): void {
  const db = new Database(join(dir, 'meta.sqlite'));
  change(db);
  db.close();
}

/** The same change, with every page-map row sealed again after it: a wrong row as pagerd itself would have written it. */
function resealed(change: (db: Database.Database) => void): (db: Database.Database) => void {
  return (db) => {
    change(db);
    resealRows(db);
  };
}

const open = (dir: string, reportOnly = false) => PersistentStore.open(storeOptions(dir, { createBytes: 64 * PAGE, reportOnly }));

describe('the page map is checked before any slot is reused', () => {
  it('a store whose page map holds no contradiction passes its check, and page-outs wait for it', async () => {
    const { dir, vmid } = await storeWithPages();
    const store = await open(dir);
    expect(store.reserveSlots(1)).toBe(true);
    const ticket = store.writePages([{ vmid, pno: 9, data: new Uint8Array(PAGE).fill(9) }]);
    await store.pageMapChecked;
    await ticket.complete;
    expect(store.failed).toBe(false);
    await store.close();
  });

  for (const [what, change, message] of [
    ['the slot high water lost (its key renamed)', (db: Database.Database) => db.exec("UPDATE meta SET key = 'slot_hig' WHERE key = 'slot_high'"), /no valid slot high water/],
    ['the slot high water lowered below mapped slots', (db: Database.Database) => db.exec("UPDATE meta SET value = '2' WHERE key = 'slot_high'"), /at or past the high water 2/],
    [
      'a mapped slot listed free',
      (db: Database.Database) => {
        const bits = db.prepare('SELECT bits FROM free_slot_map WHERE chunk = 0').pluck().get() as Buffer | undefined;
        const row = bits ?? Buffer.alloc(CHUNK_SLOTS / 8);
        row[0] |= 1 << 3; // slot 3
        db.prepare('INSERT OR REPLACE INTO free_slot_map (chunk, bits) VALUES (0, ?)').run(row);
      },
      /maps slot 3, which the free-slot map lists free/,
    ],
    [
      'one slot mapped by two pages (its row sealed as if pagerd wrote it)',
      resealed((db) => {
        const entries = db.prepare('SELECT entries FROM page_map WHERE run = 0').pluck().get() as Buffer;
        entries.writeUInt32LE(entries.readUInt32LE(0), 8); // page 1 now points at page 0's slot
        db.prepare('UPDATE page_map SET entries = ? WHERE run = 0').run(entries);
      }),
      /is mapped by more than one page/,
    ],
    ['a row moved to another run (its key flipped)', (db: Database.Database) => db.exec('UPDATE page_map SET run = run + 2'), /row \(segment 1, run 2\) fails its seal/],
    [
      'a row whose slot changed (a flipped bit)',
      (db: Database.Database) => {
        const entries = db.prepare('SELECT entries FROM page_map WHERE run = 0').pluck().get() as Buffer;
        entries[0] ^= 0x10; // page 0 now points at slot 16, never written and listed in no free map
        db.prepare('UPDATE page_map SET entries = ? WHERE run = 0').run(entries);
      },
      /row \(segment 1, run 0\) fails its seal/,
    ],
    ['a segment whose owner changed (a flipped bit)', (db: Database.Database) => db.exec('UPDATE segments SET uid = uid + 1'), /the record of segment 1 fails its seal/],
    ['a row whose count of mapped pages is wrong', (db: Database.Database) => db.exec('UPDATE page_map SET mapped = 7'), /says it maps 7 pages, its entries map 8/],
    ['a row of a segment that does not exist (its key flipped)', (db: Database.Database) => db.exec('UPDATE page_map SET vmid = vmid + 4'), /fails its seal/],
    ['a row of a segment that does not exist (sealed as if pagerd wrote it)', resealed((db) => db.exec('UPDATE page_map SET vmid = vmid + 4')), /belongs to no segment/],
    ['a row deleted whole', (db: Database.Database) => db.exec('DELETE FROM page_map WHERE run = 0'), /records 8 mapped pages, its page-map rows map 0/],
    ['a row with a malformed entries blob', (db: Database.Database) => db.exec("UPDATE page_map SET entries = X'0102'"), /malformed entries/],
  ] as const) {
    it(`${what}: refused with one line, as corruption (exit 65), before any page-out`, async () => {
      const { dir } = await storeWithPages();
      corrupt(dir, change);
      const refused = await open(dir).then(
        async (store) => {
          // Found by the check that runs after open, before any page-out may take a slot.
          const found = await store.pageMapChecked.then(() => undefined, (err: unknown) => err);
          expect(store.failed).toBe(found !== undefined);
          if (found !== undefined) {
            expect(store.reserveSlots(1)).toBe(true);
            await expect(store.writePages([{ vmid: 1, pno: 9, data: new Uint8Array(PAGE) }]).complete).rejects.toMatchObject({ code: 'EIO', reason: 'store-failed' });
          }
          await store.abort();
          return found;
        },
        (err: unknown) => err,
      );
      expect(refused).toBeInstanceOf(StoreCorruptError);
      expect((refused as Error).message).toMatch(message);
      expect((refused as Error).message).not.toMatch(/\n/);
    });
  }

  it('a free slot the free-slot map lost (its bit cleared) is free again after the check, and listed by the next commit', async () => {
    const { dir, vmid } = await storeWithPages();
    let store = await open(dir);
    await store.pageMapChecked;
    store.releasePages(vmid, 0, 2);
    await store.close();
    corrupt(dir, (db) => db.exec('DELETE FROM free_slot_map'));
    store = await open(dir);
    expect(store.slotStats.mapped).toBe(8); // the allocator counts every slot not listed free as mapped
    await store.pageMapChecked;
    expect(store.slotStats.mapped).toBe(6);
    expect(store.reserveSlots(1)).toBe(true);
    await store.writePages([{ vmid, pno: 9, data: new Uint8Array(PAGE).fill(9) }]).complete;
    await store.close();
    store = await open(dir);
    expect(store.slotStats.mapped).toBe(7); // listed again: known before any check
    await store.pageMapChecked;
    expect(store.slotStats.mapped).toBe(7);
    await store.close();
  });

  it('pagerd --check opens such a store to report every problem', async () => {
    const { dir } = await storeWithPages();
    corrupt(dir, (db) => db.exec("UPDATE meta SET value = '2' WHERE key = 'slot_high'"));
    const store = await open(dir, true);
    expect(store.pageMapProblems.count).toBe(6); // slots 2..7
    expect(store.pageMapProblems.first).toHaveLength(5);
    await store.abort();
  });
});

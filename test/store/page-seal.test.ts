import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { V_WORKING } from '../../src/constants.js';
import { PageSeal } from '../../src/meta/page-seal.js';
import { PAGE_ENTRY_BYTES, RUN_PAGES } from '../../src/meta/pages-table.js';
import { encodeHeader, FORMAT_VERSION, HEADER_PROBE_BYTES, probeHeader, type StoreHeader } from '../../src/store/header.js';
import { PersistentStore } from '../../src/store/persistent-store.js';
import { scrub } from '../../src/store/scrub.js';
import { openStore, resealRows, storeDir, storeOptions } from '../support/store-files.js';

const PAGE = 4096;
const page = (byte: number) => new Uint8Array(PAGE).fill(byte);
const segment = { type: V_WORKING, options: 0, extent: 4 * RUN_PAGES * PAGE, uid: 1, gid: 1, mode: 0o600 } as const;

/** A store with pages 0..3 and RUN_PAGES..RUN_PAGES+3 of one segment written (page p holds byte p + 1), closed. */
async function storeWithTwoRuns(): Promise<{ dir: string; vmid: number; pages: number[] }> {
  const dir = storeDir();
  const store = await openStore(dir, { createBytes: 64 * PAGE });
  const vmid = await store.createSegment(segment);
  const pages = [0, 1, 2, 3, RUN_PAGES, RUN_PAGES + 1, RUN_PAGES + 2, RUN_PAGES + 3];
  expect(store.reserveSlots(pages.length)).toBe(true);
  await store.writePages(pages.map((pno) => ({ vmid, pno, data: page(pno + 1) }))).complete;
  await store.close();
  return { dir, vmid, pages };
}

function readHeader(dir: string): StoreHeader {
  const fd = openSync(join(dir, 'backing'), 'r');
  const buf = Buffer.alloc(HEADER_PROBE_BYTES);
  readSync(fd, buf, 0, buf.length, 0);
  closeSync(fd);
  const found = probeHeader(buf);
  if (found.kind !== 'ours') throw new Error(`not ours: ${found.kind}`);
  return found.header;
}

describe('page seals', () => {
  it('differ for every page of a segment and for every store, and undo themselves', () => {
    const a = new PageSeal('00112233445566778899aabbccddeeff');
    const b = new PageSeal('00112233445566778899aabbccddeef0');
    const crc = 0x12345678;
    const seals = new Set(Array.from({ length: 4096 }, (_, pno) => a.of(crc, 7, pno)));
    expect(seals.size).toBe(4096);
    expect(a.of(crc, 7, 1)).not.toBe(a.of(crc, 8, 1));
    expect(a.of(crc, 7, 1)).not.toBe(b.of(crc, 7, 1));
    expect(a.of(a.of(crc, 7, 1), 7, 1)).toBe(crc);
  });

  it('a page-map row moved to another run answers EIO for its pages, never their bytes as another page’s, even with its row sealed again', async () => {
    // Without resealing, the row's own seal refuses it (page-map-check.test.ts); the page seals
    // are the second line: each entry is bound to its page.
    const { dir, vmid } = await storeWithTwoRuns();
    const db = new Database(join(dir, 'meta.sqlite'));
    db.prepare('UPDATE page_map SET run = 2 WHERE vmid = ? AND run = 1').run(vmid);
    resealRows(db);
    db.close();
    const store = await openStore(dir, { createBytes: 64 * PAGE });
    const into = new Uint8Array(PAGE);
    for (let k = 0; k < 4; k++) {
      await expect(store.readPage(vmid, 2 * RUN_PAGES + k, into)).rejects.toMatchObject({ code: 'EIO', reason: 'checksum-mismatch' });
    }
    await store.readPage(vmid, 0, into);
    expect(into).toEqual(page(1));
    const report = await scrub(store);
    expect(report.bad.map((b) => b.pno)).toEqual([0, 1, 2, 3].map((k) => 2 * RUN_PAGES + k));
    await store.close();
  });

  it('a store of format 2 (plain CRC-32C checksums) is sealed and upgraded at open, and reads back', async () => {
    const { dir, vmid, pages } = await storeWithTwoRuns();
    // Make it what format 2 wrote: unsealed checksums (a seal undoes itself), schema 4, header 2;
    // opening it then runs migrations 5 (page seals), 6 (segment counts) and 7 (row and record seals).
    const header = readHeader(dir);
    const seal = new PageSeal(header.storeId);
    const db = new Database(join(dir, 'meta.sqlite'));
    for (const { run, entries } of db.prepare('SELECT run, entries FROM page_map WHERE vmid = ?').all(vmid) as { run: number; entries: Buffer }[]) {
      for (let i = 0; i < RUN_PAGES; i++) {
        const at = i * PAGE_ENTRY_BYTES;
        if (entries.readUInt32LE(at) !== 0) entries.writeUInt32LE(seal.of(entries.readUInt32LE(at + 4), vmid, run * RUN_PAGES + i), at + 4);
      }
      db.prepare('UPDATE page_map SET entries = ? WHERE vmid = ? AND run = ?').run(entries, vmid, run);
    }
    db.exec('ALTER TABLE segments DROP COLUMN mapped; ALTER TABLE segments DROP COLUMN seal; ALTER TABLE page_map DROP COLUMN seal'); // added by migrations 6 and 7
    db.pragma('user_version = 4');
    db.close();
    const fd = openSync(join(dir, 'backing'), 'r+');
    writeSync(fd, encodeHeader({ ...header, formatVersion: 2 }), 0, HEADER_PROBE_BYTES, 0);
    closeSync(fd);

    const store = await PersistentStore.open(storeOptions(dir, { createBytes: 64 * PAGE }));
    for (const pno of pages) {
      const into = new Uint8Array(PAGE);
      await store.readPage(vmid, pno, into);
      expect(into).toEqual(page(pno + 1));
    }
    await store.close();
    expect(readHeader(dir).formatVersion).toBe(FORMAT_VERSION);
  });
});

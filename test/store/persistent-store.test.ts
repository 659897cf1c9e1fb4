import { closeSync, openSync, readSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '../../src/native/addon.js';
import Database from 'better-sqlite3';
import { describe, expect, it, vi } from 'vitest';
import { V_CLIENT, V_WORKING } from '../../src/constants.js';
import { PageSeal } from '../../src/meta/page-seal.js';
import { PagesTable } from '../../src/meta/pages-table.js';
import { SMALL_CYCLE_PAGES } from '../../src/store/page-writer.js';
import { PersistentStore } from '../../src/store/persistent-store.js';
import { openStore, storeDir, storeOptions } from '../support/store-files.js';

const PAGE = 4096;
const page = (byte: number) => new Uint8Array(PAGE).fill(byte);
const segment = { type: V_WORKING, options: 0, extent: 16 * PAGE, uid: 1, gid: 1, mode: 0o600 } as const;

async function writeDurably(store: PersistentStore, vmid: number, pno: number, data: Uint8Array): Promise<void> {
  expect(store.reserveSlots(1)).toBe(true);
  await store.writePages([{ vmid, pno, data }]).complete;
}

async function readBack(store: PersistentStore, vmid: number, pno: number): Promise<Uint8Array> {
  const buf = new Uint8Array(PAGE);
  await store.readPage(vmid, pno, buf);
  return buf;
}

describe('PersistentStore', () => {
  it('formats a new sparse file on first use and keeps segments and pages across reopen', async () => {
    const dir = storeDir();
    let store = await openStore(dir);
    expect(store.recoveryCheck).toBeUndefined();
    const vmid = await store.createSegment(segment);
    await writeDurably(store, vmid, 3, page(7));
    await store.close();
    expect(statSync(join(dir, 'backing')).size).toBe(65 * PAGE);

    store = await openStore(dir);
    expect(await store.loadSegments()).toEqual([{ vmid, ...segment }]);
    expect(await readBack(store, vmid, 3)).toEqual(page(7));
    expect(await readBack(store, vmid, 4)).toEqual(page(0));
    await store.close();
  });

  it('never reuses a vmid', async () => {
    const store = await openStore(storeDir());
    const a = await store.createSegment(segment);
    await store.deleteSegment(a);
    expect(await store.createSegment(segment)).toBeGreaterThan(a);
    await store.close();
  });

  it('writes a new version to a fresh slot and frees the old one only after commit (copy-on-write)', async () => {
    const dir = storeDir();
    const store = await openStore(dir);
    const vmid = await store.createSegment(segment);
    await writeDurably(store, vmid, 0, page(1));
    const first = store.pageBatchAfter(0, 0, 10)[0].slot;
    expect(store.reserveSlots(1)).toBe(true);
    const ticket = store.writePages([{ vmid, pno: 0, data: page(2) }]);
    await new Promise((r) => setImmediate(r)); // the cycle is being written and flushed
    // Its flush not yet known good: the old slot still holds version 1 and is not free.
    expect(store.slotIsFree(first)).toBe(false);
    await ticket.complete;
    const second = store.pageBatchAfter(0, 0, 10)[0].slot;
    expect(second).not.toBe(first);
    expect(await readBack(store, vmid, 0)).toEqual(page(2));
    await new Promise((r) => setImmediate(r));
    expect(store.slotIsFree(first)).toBe(true);
    await store.close();
  });

  it('writes a page-out submitted as the one before it completes (from its completion)', async () => {
    const store = await openStore(storeDir());
    const vmid = await store.createSegment(segment);
    expect(store.reserveSlots(3)).toBe(true);
    const chained = (pno: number): Promise<void> =>
      store.writePages([{ vmid, pno, data: page(pno + 1) }]).complete.then(() => (pno < 2 ? chained(pno + 1) : undefined));
    await chained(0);
    expect(store.mappedPages()).toBe(3);
    await store.close();
  });

  it('numbers each cycle once, a large one queued behind a small one included', async () => {
    const dir = storeDir();
    const n = 128; // more than a small cycle; with the small one, more than a cycle may hold
    const store = await openStore(dir, { createBytes: PAGE * (2 * n + 8), maxBatchPages: n });
    expect(n).toBeGreaterThan(SMALL_CYCLE_PAGES);
    const vmid = await store.createSegment({ ...segment, extent: (n + 1) * PAGE });
    const cycle = (): number => {
      const db = new Database(join(dir, 'meta.sqlite'), { readonly: true });
      try {
        return Number((db.prepare("SELECT value FROM meta WHERE key = 'cycle'").get() as { value: string }).value);
      } finally {
        db.close();
      }
    };
    await writeDurably(store, vmid, 0, page(1));
    const before = cycle();
    expect(store.reserveSlots(n + 1)).toBe(true);
    const small = store.writePages([{ vmid, pno: 0, data: page(2) }]);
    const large = store.writePages(Array.from({ length: n }, (_, i) => ({ vmid, pno: i + 1, data: page(3) })));
    await Promise.all([small.complete, large.complete]);
    expect(cycle()).toBe(before + 2);
    await store.close();
  });

  it('answers EIO when a slot fails its checksum, and logs it', async () => {
    const dir = storeDir();
    const errors: object[] = [];
    const log = { info() {}, warn() {}, error: (o: object) => errors.push(o) };
    let store = await openStore(dir, { log });
    const vmid = await store.createSegment(segment);
    await writeDurably(store, vmid, 0, page(5));
    const slot = store.pageBatchAfter(0, 0, 1)[0].slot;
    await store.close();
    const fd = openSync(join(dir, 'backing'), 'r+');
    writeSync(fd, Buffer.from([0x55]), 0, 1, PAGE + slot * PAGE + 100);
    closeSync(fd);
    store = await openStore(dir, { log });
    const into = new Uint8Array(PAGE);
    await expect(store.readPage(vmid, 0, into)).rejects.toMatchObject({ code: 'EIO', reason: 'checksum-mismatch' });
    expect(errors).toHaveLength(1);
    await store.close();
  });

  it('releases pages durably: they read as zeros after reopen and their slots are punched', async () => {
    const dir = storeDir();
    let store = await openStore(dir);
    const vmid = await store.createSegment(segment);
    for (let p = 0; p < 4; p++) await writeDurably(store, vmid, p, page(p + 1));
    const slotOf2 = store.pageBatchAfter(vmid, 1, 1)[0].slot;
    await store.releasePages(vmid, 1, 2);
    await store.close();
    const raw = Buffer.alloc(PAGE);
    const fd = openSync(join(dir, 'backing'), 'r');
    readSync(fd, raw, 0, PAGE, PAGE + slotOf2 * PAGE);
    closeSync(fd);
    expect(raw.every((b) => b === 0)).toBe(true);
    store = await openStore(dir);
    expect(await readBack(store, vmid, 1)).toEqual(page(0));
    expect(await readBack(store, vmid, 2)).toEqual(page(0));
    expect(await readBack(store, vmid, 3)).toEqual(page(4));
    expect(store.mappedPages()).toBe(2);
    await store.close();
  });

  it('does not let a page-out that completes after a release map the page again', async () => {
    const store = await openStore(storeDir());
    const vmid = await store.createSegment(segment);
    expect(store.reserveSlots(1)).toBe(true);
    const ticket = store.writePages([{ vmid, pno: 0, data: page(9) }]);
    await store.releasePages(vmid, 0, 1);
    await ticket.complete;
    expect(await readBack(store, vmid, 0)).toEqual(page(0));
    expect(store.mappedPages()).toBe(0);
    await store.close();
  });

  it('refuses reservations past capacity minus the spare slots', async () => {
    const store = await openStore(storeDir(), { createBytes: 11 * PAGE, spareSlots: 2 });
    expect(store.slotStats.capacity).toBe(10);
    expect(store.reserveSlots(8)).toBe(true);
    expect(store.reserveSlots(1)).toBe(false);
    store.unreserveSlots(8);
    await store.close();
  });

  it('refuses a second pagerd on the same store at once', async () => {
    const dir = storeDir();
    const store = await openStore(dir);
    await expect(PersistentStore.open(storeOptions(dir, { databasePath: join(dir, 'other.sqlite') }))).rejects.toThrow(/in use by another pagerd/);
    await store.close();
  });

  it('refuses a device holding foreign data unless told to format it', async () => {
    const dir = storeDir();
    writeFileSync(join(dir, 'backing'), Buffer.alloc(65 * PAGE, 0x42));
    await expect(openStore(dir)).rejects.toThrow(/not a pagerd store.*--format/);
    const store = await openStore(dir, { format: true });
    const vmid = await store.createSegment({ ...segment, type: V_CLIENT });
    expect(vmid).toBe(1);
    await store.close();
  });

  it('refuses a page size or metadata that does not match the device', async () => {
    const dir = storeDir();
    const store = await openStore(dir);
    await store.close();
    await expect(openStore(dir, { pageSize: 65536 })).rejects.toThrow(/page size 4096/);
    unlinkSync(join(dir, 'meta.sqlite'));
    await expect(openStore(dir)).rejects.toThrow(/metadata database .* is missing/);
  });

  it('runs the integrity check after an unclean shutdown', async () => {
    const dir = storeDir();
    const a = await openStore(dir);
    const vmid = await a.createSegment(segment);
    await writeDurably(a, vmid, 0, page(3));
    // No clean close: abort() closes the files as a dying process would (kill -9 itself is in the crash-loop test).
    await a.abort();
    const b = await openStore(dir);
    expect(b.recoveryCheck).toBe('ok');
    expect(await readBack(b, vmid, 0)).toEqual(page(3));
    await b.close();
  });
});

describe('PersistentStore at scale', () => {
  it('releases and deletes segments with hundreds of thousands of mapped pages', async () => {
    const dir = storeDir();
    const pages = 300_000;
    let store = await openStore(dir, { createBytes: (pages + 16) * PAGE });
    const a = await store.createSegment({ ...segment, extent: pages * PAGE });
    const b = await store.createSegment({ ...segment, extent: pages * PAGE });
    const seal = new PageSeal(store.header.storeId);
    await store.close();
    // Map the pages the fast way, straight into the page map (slots hold zero pages).
    const db = new Database(join(dir, 'meta.sqlite'));
    const map = new PagesTable(db, seal);
    const zero = crc32c(new Uint8Array(PAGE));
    db.transaction(() => {
      map.putMany(Array.from({ length: pages / 2 }, (_, p) => ({ vmid: a, pno: p, slot: p, checksum: zero })));
      map.putMany(Array.from({ length: pages / 2 }, (_, p) => ({ vmid: b, pno: p, slot: pages / 2 + p, checksum: zero })));
      db.prepare("UPDATE meta SET value = ? WHERE key = 'slot_high'").run(String(pages));
      db.prepare('UPDATE segments SET mapped = ? WHERE vmid IN (?, ?)').run(pages / 2, a, b);
    })();
    db.close();
    store = await openStore(dir, { createBytes: (pages + 16) * PAGE });
    expect(store.slotStats.mapped).toBe(pages);
    await store.releasePages(a, 0, pages);
    await store.deleteSegment(b);
    expect(store.mappedPages()).toBe(0);
    expect(store.slotStats).toMatchObject({ mapped: 0, limbo: pages }); // given back in the thread pool
    await vi.waitFor(() => expect(store.slotStats).toMatchObject({ mapped: 0, limbo: 0 }), { timeout: 30_000, interval: 20 });
    await store.close();
  }, 60_000);
});

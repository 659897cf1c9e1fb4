import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { V_WORKING } from '../../src/constants.js';
import { PersistentStore } from '../../src/store/persistent-store.js';
import { attachLoopDevice, isRoot } from '../support/loop-device.js';
import { storeDir, storeOptions } from '../support/store-files.js';

const PAGE = 4096;
const page = (byte: number) => new Uint8Array(PAGE).fill(byte);

describe('a real loop device', () => {
  it.runIf(isRoot)('is formatted on first use, sized by BLKGETSIZE64, opened exclusively, discarded on release, and keeps pages across reopen', async () => {
    const loop = attachLoopDevice(257 * PAGE);
    try {
      const dir = storeDir();
      const options = storeOptions(dir, { devicePath: loop.path });
      let store = await PersistentStore.open(options);
      expect(store.device.kind).toBe('block');
      expect(store.slotStats.capacity).toBe(256);
      await expect(PersistentStore.open(storeOptions(storeDir(), { devicePath: loop.path }))).rejects.toThrow(/in use/);
      const vmid = await store.createSegment({ type: V_WORKING, options: 0, extent: 8 * PAGE, uid: 0, gid: 0, mode: 0o600 });
      for (let p = 0; p < 4; p++) {
        expect(store.reserveSlots(1)).toBe(true);
        await store.writePages([{ vmid, pno: p, data: page(p + 1) }]).complete;
      }
      await store.releasePages(vmid, 1, 1);
      await store.close();

      store = await PersistentStore.open(options);
      const buf = new Uint8Array(PAGE);
      for (const [p, want] of [[0, 1], [1, 0], [2, 3], [3, 4]]) {
        await store.readPage(vmid, p, buf);
        expect(buf).toEqual(page(want));
      }
      await store.close();
    } finally {
      loop.detach();
    }
  });
});

describe('a real writeback error', () => {
  // A loop device over a sparse file on a tiny tmpfs: writes land in the device's page cache and
  // succeed; their writeback fails once the tmpfs is full, which only fdatasync reports (errseq).
  // The writer starts writeback early (sync_file_range): that must not swallow the error.
  // The tmpfs holds the header page and exactly four cycles of 8 pages: on this kernel (6.18) a
  // loop request that crosses the point where its backing file system fills completes as a
  // success and its tail is lost (a bare writev + fdatasync of the loop device shows it too); one
  // that starts past it fails. pagerd's checksums still turn such a lost page into EIO on
  // reading, never wrong bytes.
  it.runIf(isRoot)('fails the page-out whose writeback failed, with EIO from its fdatasync; what was acknowledged before reads back', async () => {
    const mount = mkdtempSync(join(tmpdir(), 'pagerd-wberr-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${(1 + 4 * 8) * 4}k`, 'tmpfs', mount]);
    const loop = attachLoopDevice(1025 * PAGE, mount);
    try {
      const options = storeOptions(storeDir(), { devicePath: loop.path });
      let store = await PersistentStore.open(options);
      const vmid = await store.createSegment({ type: V_WORKING, options: 0, extent: 1024 * PAGE, uid: 0, gid: 0, mode: 0o600 });
      const acknowledged: number[] = [];
      let failure: unknown;
      for (let p = 0; p < 1024 && failure === undefined; p += 8) {
        const pages = Array.from({ length: 8 }, (_, i) => ({ vmid, pno: p + i, data: page(((p + i) % 250) + 1) }));
        expect(store.reserveSlots(8)).toBe(true);
        try {
          await store.writePages(pages).complete;
          acknowledged.push(...pages.map((w) => w.pno));
        } catch (err) {
          failure = err;
        }
      }
      expect(failure).toMatchObject({ code: 'EIO', reason: 'page-out-failed' });
      expect(String((failure as Error).message)).toMatch(/datasync failed: .*EIO/);
      expect(acknowledged).toHaveLength(4 * 8);
      await store.abort();

      store = await PersistentStore.open(options);
      const buf = new Uint8Array(PAGE);
      for (const p of acknowledged) {
        await store.readPage(vmid, p, buf);
        expect(buf).toEqual(page((p % 250) + 1));
      }
      expect(store.mappedPages()).toBe(acknowledged.length);
      await store.abort();
    } finally {
      loop.detach();
      execFileSync('umount', ['-l', mount]);
      rmSync(mount, { recursive: true, force: true });
    }
  });
});

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

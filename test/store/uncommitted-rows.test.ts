import { expect, it } from 'vitest';
import { V_WORKING } from '../../src/constants.js';
import { openStore, removeStoreDir, storeDir } from '../support/store-files.js';

const PAGE = 4096;
/** More rows than the page map keeps cached (8,192): one cycle evicts its own first rows. */
const ROWS = 8200;
const page = (byte: number) => new Uint8Array(PAGE).fill(byte);

it('a page-map row looked up while its cycle commits in the writer thread is never left stale: reads and the next cycle use the committed row', async () => {
  const dir = storeDir();
  const options = { createBytes: PAGE * (2 * ROWS + 64), maxBatchPages: ROWS + 10 };
  const store = await openStore(dir, options);
  const vmid = await store.createSegment({ type: V_WORKING, options: 0, extent: PAGE * 32 * (ROWS + 2), uid: 1, gid: 1, mode: 0o600 });
  await store.pageMapChecked;
  expect(store.reserveSlots(1)).toBe(true);
  await store.writePages([{ vmid, pno: 0, data: page(1) }]).complete;
  await new Promise((r) => setTimeout(r, 100)); // settled

  // Page 0 and one page in each of ROWS other rows, in one cycle.
  const writes = [{ vmid, pno: 0, data: page(2) }];
  for (let r = 1; r <= ROWS; r++) writes.push({ vmid, pno: r * 32, data: page(3) });
  expect(store.reserveSlots(writes.length)).toBe(true);
  const ticket = store.writePages(writes);
  await ticket.captured;
  await new Promise((r) => setTimeout(r, 2)); // its commit recorded and sent
  store.pageLocation(vmid, 0); // a lookup while it commits
  await ticket.complete;
  await new Promise((r) => setTimeout(r, 100));
  const after = new Uint8Array(PAGE);
  await store.readPage(vmid, 0, after);
  expect(after[0]).toBe(2);

  // The next cycle touching page 0's row keeps page 0 where the last commit put it.
  expect(store.reserveSlots(1)).toBe(true);
  await store.writePages([{ vmid, pno: 1, data: page(4) }]).complete;
  await store.close();
  const again = await openStore(dir, options);
  try {
    const reopened = new Uint8Array(PAGE);
    await again.readPage(vmid, 0, reopened);
    expect(reopened[0]).toBe(2);
  } finally {
    await again.close();
    removeStoreDir(dir);
  }
}, 60_000);

import { crc32c } from '../native/addon.js';
import type { Database } from '../meta/database.js';
import { FreeSlotMap } from '../meta/free-slot-map.js';
import { PagesTable, type PageLocation, type PageMapping } from '../meta/pages-table.js';
import { UnsyncedPageouts, type UnsyncedPage } from '../meta/unsynced-pageouts.js';
import type { BackingDevice } from './device.js';
import type { StoreHeader } from './header.js';

/**
 * Settles the pages of a page-out cycle whose data flush failed or was cut short (inside the
 * caller's transaction). A page still mapped keeps its new slot only if `keep` says its bytes are
 * good; otherwise it goes back to where it was (or unmapped, if it was nowhere). A page released
 * since is left alone. Answers the slots no page points at any more.
 */
export function rollBackUnsynced(pages: PagesTable, unsynced: readonly UnsyncedPage[], keep: (now: PageLocation, page: UnsyncedPage) => boolean): number[] {
  const unused: number[] = [];
  const restore: PageMapping[] = [];
  for (const page of unsynced) {
    const now = pages.get(page.vmid, page.pno);
    if (now === undefined || keep(now, page)) {
      if (page.previous !== undefined) unused.push(page.previous.slot);
      continue;
    }
    unused.push(now.slot);
    if (page.previous !== undefined) restore.push({ vmid: page.vmid, pno: page.pno, ...page.previous });
    else pages.deleteRange(page.vmid, page.pno, page.pno + 1);
  }
  pages.putMany(restore);
  return unused;
}

/**
 * At open: resolves the cycles a crash left unsynced. Each page on a new slot is read and checked:
 * one whose bytes did not all reach the device goes back to its last complete version. Answers
 * how many pages went back.
 */
export async function recoverUnsynced(db: Database, device: BackingDevice, header: StoreHeader): Promise<number> {
  const { pageSize, slotCount } = header;
  const dataOffset = pageSize; // slot 0 follows the header's page
  const unsynced = new UnsyncedPageouts(db);
  const pagesTable = new PagesTable(db);
  const cycles = unsynced.all();
  if (cycles.length === 0) return 0;
  const bad = new Set<string>();
  const into = new Uint8Array(pageSize);
  for (const { pages } of cycles) {
    for (const page of pages) {
      const now = pagesTable.get(page.vmid, page.pno);
      if (now === undefined) continue;
      await device.read(into, dataOffset + now.slot * pageSize);
      if (crc32c(into) !== now.checksum) bad.add(`${page.vmid}:${page.pno}`);
    }
  }
  const freeSlots = new FreeSlotMap(db, slotCount);
  db.transaction(() => {
    for (const { cycle, pages } of cycles) {
      freeSlots.mark(rollBackUnsynced(pagesTable, pages, (_now, page) => !bad.has(`${page.vmid}:${page.pno}`)), true);
      unsynced.delete(cycle);
    }
    freeSlots.write();
  }).immediate();
  return bad.size;
}

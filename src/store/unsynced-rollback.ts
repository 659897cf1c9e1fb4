import type { PagesTable, PageMapping } from '../meta/pages-table.js';
import type { UnsyncedPage } from '../meta/unsynced-pageouts.js';

/**
 * Settles the pages of a page-out cycle whose data flush failed or was cut short (inside the
 * caller's transaction). A page still mapped keeps its new slot only if `keep` says its bytes are
 * good; otherwise it goes back to where it was (or unmapped, if it was nowhere). A page released
 * since is left alone. Answers the slots no page points at any more.
 */
export function rollBackUnsynced(pages: PagesTable, unsynced: readonly UnsyncedPage[], keep: (page: UnsyncedPage) => boolean): number[] {
  const unused: number[] = [];
  const restore: PageMapping[] = [];
  const unmap: UnsyncedPage[] = [];
  for (const page of unsynced) {
    const now = pages.get(page.vmid, page.pno);
    if (now === undefined || keep(page)) {
      if (page.previous !== undefined) unused.push(page.previous.slot);
      continue;
    }
    unused.push(now.slot);
    if (page.previous !== undefined) restore.push({ vmid: page.vmid, pno: page.pno, ...page.previous });
    else unmap.push(page);
  }
  pages.putMany(restore);
  pages.unmapMany(unmap);
  return unused;
}

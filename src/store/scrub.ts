import { crc32 } from 'node:zlib';
import type { PersistentStore } from './persistent-store.js';

export interface ScrubReport {
  ok: boolean;
  pages: number;
  /** Pages whose slot failed its checksum or could not be read. */
  bad: { vmid: number; pno: number; slot: number; why: string }[];
  /** Slots mapped by more than one page (must never happen). */
  sharedSlots: number[];
  /** Mapped slots that the allocator lists as free (must never happen). */
  mappedButFree: number[];
}

/**
 * Reads every mapped slot and checks its checksum, and checks the page map against the slot
 * allocator: no slot mapped twice, no mapped slot listed free. Reports progress as (done, total).
 */
export async function scrub(store: PersistentStore, onProgress?: (done: number, total: number) => void): Promise<ScrubReport> {
  const total = store.mappedPages();
  const report: ScrubReport = { ok: true, pages: 0, bad: [], sharedSlots: [], mappedButFree: [] };
  const seen = new Uint8Array(Math.ceil(store.slotStats.capacity / 8));
  const buf = new Uint8Array(store.pageSize);
  let cursor = { vmid: -1, pno: -1 };
  for (;;) {
    const batch = store.pageBatchAfter(cursor.vmid, cursor.pno, 1024);
    if (batch.length === 0) break;
    for (const page of batch) {
      const bit = 1 << (page.slot & 7);
      if ((seen[page.slot >> 3] & bit) !== 0) report.sharedSlots.push(page.slot);
      seen[page.slot >> 3] |= bit;
      if (store.slotIsFree(page.slot)) report.mappedButFree.push(page.slot);
      try {
        await store.device.read(buf, store.dataOffset + page.slot * store.pageSize);
        if (crc32(buf) !== page.checksum) report.bad.push({ ...page, why: 'checksum mismatch' });
      } catch (err) {
        report.bad.push({ ...page, why: (err as Error).message });
      }
      report.pages++;
    }
    cursor = batch[batch.length - 1];
    onProgress?.(report.pages, total);
  }
  report.ok = report.bad.length === 0 && report.sharedSlots.length === 0 && report.mappedButFree.length === 0;
  return report;
}

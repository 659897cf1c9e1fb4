import type { PersistentStore } from './persistent-store.js';
import { addScrubChunk, emptyScrubTotals, type ScrubTotals } from '../scrub-report.js';

export interface ScrubFindings {
  /** Pages checked. */
  pages: number;
  /** Pages whose slot failed its checksum or could not be read. */
  bad: { vmid: number; pno: number; slot: number; why: string }[];
  /** Mapped slots the allocator lists as free (must never happen). */
  mappedButFree: number[];
}

export interface ScrubChunk extends ScrubFindings {
  /** Where the next chunk starts, or null when the scrub is done. */
  next: { vmid: number; pno: number } | null;
  /** Mapped pages in all (the allocator's count: summing the page map per chunk made a scrub quadratic). */
  total: number;
  /** Slots mapped by more than one page (checked with the first chunk only; must never happen). */
  sharedSlots: number[];
}

export type ScrubReport = ScrubTotals;

export const SCRUB_START = { vmid: -1, pno: -1 };

/**
 * Scrubs up to `limit` mapped pages after `after`: reads each slot and checks its checksum, and
 * checks the page map against the slot allocator. The first chunk also checks that no slot is
 * mapped twice. Chunked so a daemon serving clients never blocks on a whole store.
 */
export async function scrubChunk(store: PersistentStore, after: { vmid: number; pno: number }, limit: number): Promise<ScrubChunk> {
  const first = after.vmid === SCRUB_START.vmid && after.pno === SCRUB_START.pno;
  const chunk: ScrubChunk = { pages: 0, bad: [], mappedButFree: [], next: null, total: store.slotStats.mapped, sharedSlots: first ? store.sharedSlots() : [] };
  const buf = new Uint8Array(store.pageSize);
  const batch = store.pageBatchAfter(after.vmid, after.pno, limit);
  for (const { vmid, pno, slot, checksum } of batch) {
    // Page-outs go on while a live store is scrubbed: a page may have moved to another slot (and
    // its old slot been freed and reused) since the batch was read. A finding counts only if the
    // page still maps to that slot with that checksum when it is made; a mapped slot is never
    // rewritten (copy-on-write), so then the bytes read were the page's.
    const unmoved = (): boolean => {
      const now = store.pageLocation(vmid, pno);
      return now !== undefined && now.slot === slot && now.checksum === checksum;
    };
    if (store.slotIsFree(slot) && unmoved()) chunk.mappedButFree.push(slot);
    let why: string | undefined;
    try {
      await store.device.read(buf, store.dataOffset + slot * store.pageSize);
      if (!store.sealMatches(buf, vmid, pno, checksum)) why = 'checksum mismatch';
    } catch (err) {
      why = (err as Error).message;
    }
    if (why !== undefined && unmoved()) chunk.bad.push({ vmid, pno, slot, why });
    chunk.pages++;
  }
  if (batch.length === limit) chunk.next = { vmid: batch[limit - 1].vmid, pno: batch[limit - 1].pno };
  return chunk;
}

/** Scrubs the whole store, reporting progress as (done, total). */
export async function scrub(store: PersistentStore, onProgress?: (done: number, total: number) => void): Promise<ScrubReport> {
  const report = emptyScrubTotals();
  let at: { vmid: number; pno: number } | null = SCRUB_START;
  while (at !== null) {
    const chunk: ScrubChunk = await scrubChunk(store, at, 1024);
    addScrubChunk(report, chunk);
    onProgress?.(report.pages, chunk.total);
    at = chunk.next;
  }
  return report;
}

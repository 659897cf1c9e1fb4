/** A scrub's findings, summed over chunks (pure: the client library uses it too). */
export interface ScrubTotals {
  ok: boolean;
  pages: number;
  bad: { vmid: number; pno: number; slot: number; why: string }[];
  mappedButFree: number[];
  sharedSlots: number[];
}

export function emptyScrubTotals(): ScrubTotals {
  return { ok: true, pages: 0, bad: [], mappedButFree: [], sharedSlots: [] };
}

/** Adds one chunk's findings to the totals and recomputes ok. */
export function addScrubChunk(totals: ScrubTotals, chunk: Omit<ScrubTotals, 'ok'>): void {
  totals.pages += chunk.pages;
  for (const b of chunk.bad) totals.bad.push(b);
  for (const slot of chunk.mappedButFree) totals.mappedButFree.push(slot);
  for (const slot of chunk.sharedSlots) totals.sharedSlots.push(slot);
  totals.ok = totals.bad.length === 0 && totals.mappedButFree.length === 0 && totals.sharedSlots.length === 0;
}

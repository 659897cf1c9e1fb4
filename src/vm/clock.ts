import { FrameFlag } from './frame-layout.js';
import { PageState, STEALABLE } from './page-state.js';
import type { Vmm } from './vmm.js';

/** Most frames one allocation looks at for a clean frame to steal. */
const STEAL_SCAN_LIMIT = 8192;

/** What the clock hand makes of one frame as it passes. */
export const Verdict = {
  /** Busy, locked, free, or given a second chance. */
  SKIP: 0,
  /** Clean and unreferenced: may be taken at once. */
  STEAL: 1,
  /** Modified and unreferenced: must be paged out before its frame is reused. */
  LAUNDER: 2,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/**
 * Page replacement: a clock hand over the frames. A set reference bit buys the page a second
 * chance (the hand clears it and moves on); an unreferenced clean page is stolen; an unreferenced
 * modified page is handed to the pageout daemon to be laundered first.
 */
export class Clock {
  private hand = 0;

  constructor(private readonly vmm: Vmm) {}

  /** Judges the frame under the hand and advances the hand past it. */
  advance(): { frame: number; verdict: Verdict } {
    const t = this.vmm.pool.table;
    const f = this.hand;
    this.hand = (f + 1) % this.vmm.pool.count;
    const flags = t.flags[f];
    // Locked, pinned, or already on its way out (laundered or flushed): not the hand's to judge.
    if ((flags & (FrameFlag.LOCKED | FrameFlag.FREE_AT_IO_DONE)) !== 0 || t.pins[f] !== 0) return { frame: f, verdict: Verdict.SKIP };
    const state = t.state[f];
    if (!STEALABLE[state] && state !== PageState.MODIFIED) return { frame: f, verdict: Verdict.SKIP };
    const accessed = this.vmm.pool.accessed;
    if ((flags & FrameFlag.REFERENCED) !== 0 || accessed[f] !== 0) {
      // A reference here, or a copy by a client reading shared frames (it sets the access byte).
      t.flags[f] = flags & ~FrameFlag.REFERENCED;
      accessed[f] = 0;
      return { frame: f, verdict: Verdict.SKIP };
    }
    if (STEALABLE[state]) return { frame: f, verdict: Verdict.STEAL };
    // A modified page nobody can write now (its client file system is gone) is not laundered: each
    // try would fail, and count as a failed page-out.
    if (this.vmm.store.mayPageOut?.(t.vmid[f]) === false) return { frame: f, verdict: Verdict.SKIP };
    return { frame: f, verdict: Verdict.LAUNDER };
  }

  /**
   * Steals one clean frame for an allocation that found the free list empty: at most two turns
   * of the hand (the second finds the reference bits the first cleared), and at most
   * STEAL_SCAN_LIMIT frames. Answers the frame, unlinked and ABSENT, or -1.
   */
  stealOne(): number {
    // Bounded: with a large pool full of dirty pages a whole turn would cost every allocation a
    // scan of the pool; past the bound the allocation waits for the pageout daemon instead.
    const limit = Math.min(2 * this.vmm.pool.count, STEAL_SCAN_LIMIT);
    for (let i = 0; i < limit; i++) {
      const { frame, verdict } = this.advance();
      if (verdict === Verdict.STEAL) {
        this.vmm.counters.steals++;
        this.vmm.unlinkClean(frame);
        return frame;
      }
    }
    return -1;
  }
}

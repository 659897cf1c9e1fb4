import { WaitQueue } from './wait-queue.js';

/**
 * A segment's I/O level (SPEC §4): every page-out of the segment takes the next sequence number;
 * the level is the highest number L such that every page-out numbered 1..L is complete. Page-outs
 * may complete in any order; the level advances only over an unbroken prefix.
 *
 * A failed page-out is complete too. Who hears of the failure is the clients' business (each
 * client context keeps one flag per segment), so nothing here grows with failures.
 */
export class IoLevel {
  /** Sequence numbers handed out so far. */
  private issued = 0;
  private level = 0;
  /** Completed page-outs above the level (completed out of order). */
  private readonly doneAhead = new Set<number>();
  private readonly waiters = new WaitQueue<0>();

  /** Numbers the next page-out. */
  next(): number {
    return ++this.issued;
  }

  /** The level a waiter captures at its call: every page-out initiated so far. */
  get captured(): number {
    return this.issued;
  }

  get completed(): number {
    return this.level;
  }

  /** Page-outs initiated and not yet complete. */
  get lag(): number {
    return this.issued - this.level - this.doneAhead.size;
  }

  /** Records page-out `seq` as complete (successfully or not). */
  complete(seq: number): void {
    if (seq <= this.level || this.doneAhead.has(seq) || seq > this.issued) {
      throw new Error(`page-out ${seq} completed twice or was never issued (level ${this.level}, issued ${this.issued})`);
    }
    if (seq === this.level + 1) {
      this.level = seq;
      while (this.doneAhead.delete(this.level + 1)) this.level++;
    } else {
      this.doneAhead.add(seq);
    }
    this.wake();
  }

  /**
   * Resolves at the next completion or wake(); rejects with EINTR if `signal` aborts first (its
   * listener is gone either way).
   */
  changed(signal?: AbortSignal): Promise<boolean> {
    return this.waiters.wait(0, undefined, signal);
  }

  /** Wakes every waiter to look again (a completion, a failure, the segment deleted). */
  wake(): void {
    this.waiters.wake(0);
  }
}

/**
 * A segment's I/O level (SPEC §4): every page-out of the segment takes the next sequence number;
 * the level is the highest number L such that every page-out numbered 1..L is complete. Page-outs
 * may complete in any order; the level advances only over an unbroken prefix.
 *
 * A failed page-out is complete too, and leaves an error behind: the first wait whose captured
 * level covers it reports EIO once, and the error is then cleared.
 */
export class IoLevel {
  /** Sequence numbers handed out so far. */
  private issued = 0;
  private level = 0;
  /** Completed page-outs above the level (completed out of order). */
  private readonly doneAhead = new Set<number>();
  /** Failed page-outs not yet reported, with what failed. */
  private readonly failures = new Map<number, Error>();
  private listeners: Array<() => void> = [];

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

  /** Records page-out `seq` as complete: successfully, or failed with `error`. */
  complete(seq: number, error?: Error): void {
    if (seq <= this.level || this.doneAhead.has(seq) || seq > this.issued) {
      throw new Error(`page-out ${seq} completed twice or was never issued (level ${this.level}, issued ${this.issued})`);
    }
    if (error !== undefined) this.failures.set(seq, error);
    if (seq === this.level + 1) {
      this.level = seq;
      while (this.doneAhead.delete(this.level + 1)) this.level++;
    } else {
      this.doneAhead.add(seq);
    }
    this.notify();
  }

  /** The first unreported failure of a page-out numbered at most `upTo`, if any. */
  failureUpTo(upTo: number): Error | undefined {
    for (const [seq, error] of this.failures) if (seq <= upTo) return error;
    return undefined;
  }

  /** Marks every failure numbered at most `upTo` as reported. */
  clearFailuresUpTo(upTo: number): void {
    for (const seq of this.failures.keys()) if (seq <= upTo) this.failures.delete(seq);
  }

  /** Resolves at the next completion. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.listeners.push(resolve));
  }

  private notify(): void {
    const listeners = this.listeners;
    this.listeners = [];
    for (const listener of listeners) listener();
  }
}

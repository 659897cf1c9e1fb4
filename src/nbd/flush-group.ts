/**
 * Flushes of one segment asked for at once share their work (group commit): a flush asked for
 * while none runs starts at once; one asked for while another runs waits for the next, which
 * starts when that one ends and covers every flush asked for meanwhile. A flush never counts on a
 * scan that began before it was asked for.
 */
export class FlushGroup {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  /** Resolves once a flush that began after this call has ended; `flush` runs it if this call starts one. */
  request(flush: () => Promise<void>): Promise<void> {
    if (this.queued !== undefined) return this.queued;
    if (this.running === undefined) return this.start(flush);
    const next = (): Promise<void> => {
      this.queued = undefined;
      return this.start(flush);
    };
    this.queued = this.running.then(next, next);
    return this.queued;
  }

  private start(flush: () => Promise<void>): Promise<void> {
    const run: Promise<void> = flush().finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }
}

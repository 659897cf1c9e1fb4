/**
 * Runs of one piece of work asked for at once share it (group commit): a request while none runs
 * starts a run at once; one while a run is in flight waits for the next run, which starts when
 * that one ends and answers every request made meanwhile. A request never counts on a run that
 * began before it was made, unless its caller says that run covers it.
 */
export class GroupCommit {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  /** True while a run is in flight. */
  get busy(): boolean {
    return this.running !== undefined;
  }

  /**
   * Resolves when a run that began after this call has ended (or the run in flight, if
   * `coveredByRunning`), and rejects as it does; `run` is called if this request starts the run.
   */
  request(run: () => Promise<void>, coveredByRunning = false): Promise<void> {
    if (this.queued !== undefined) return this.queued;
    if (this.running === undefined) return this.start(run);
    if (coveredByRunning) return this.running;
    const next = (): Promise<void> => {
      this.queued = undefined;
      return this.start(run);
    };
    this.queued = this.running.then(next, next);
    return this.queued;
  }

  /** Resolves once no run is in flight or queued (however they end). */
  async idle(): Promise<void> {
    await Promise.allSettled([this.running, this.queued]);
  }

  private start(run: () => Promise<void>): Promise<void> {
    const started: Promise<void> = run().finally(() => {
      if (this.running === started) this.running = undefined;
    });
    this.running = started;
    return started;
  }
}

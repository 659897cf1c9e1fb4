/**
 * The store's call order (SPEC: a later call's effect is never overridden by an earlier one that
 * completes later). Every page-out batch and every release or delete takes a stamp when it is
 * called; a page-out committing after a release or delete stamped later must not map a page they
 * cover. Releases are remembered only while a page-out older than them is in flight, so the list
 * stays as short as the overlap.
 */
export class CallOrder {
  private clock = 0;
  /** Stamps of the page-out batches in flight. */
  private readonly batchesInFlight = new Set<number>();
  /** Releases and deletes made while page-outs were in flight, with their stamps. */
  private forgets: { vmid: number; first: number; end: number; stamp: number }[] = [];

  /** Stamps a page-out batch; call the answer once the batch has settled. */
  batchStarted(): { stamp: number; settled: () => void } {
    const stamp = ++this.clock; // one call, one moment: its pages share the stamp
    this.batchesInFlight.add(stamp);
    const settled = (): void => {
      this.batchesInFlight.delete(stamp);
      let oldest = Infinity;
      for (const inFlight of this.batchesInFlight) oldest = Math.min(oldest, inFlight);
      this.forgets = this.forgets.filter((f) => f.stamp > oldest);
    };
    return { stamp, settled };
  }

  /** Stamps a release or delete of pages [first, end) of `vmid` that has taken effect. */
  forgot(vmid: number, first: number, end: number): void {
    const stamp = ++this.clock;
    if (this.batchesInFlight.size > 0) this.forgets.push({ vmid, first, end, stamp });
  }

  /** True if a release or delete called after the page-out stamped `stamp` covers its page. */
  overtaken(vmid: number, pno: number, stamp: number): boolean {
    return this.forgets.some((f) => f.stamp > stamp && f.vmid === vmid && pno >= f.first && pno < f.end);
  }
}

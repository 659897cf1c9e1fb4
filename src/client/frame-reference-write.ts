import { copyBytes } from '../copy-bytes.js';
import type { StrategyRequest } from './client.js';

/**
 * A strategy write whose pages lie in the daemon's shared frames (a write by frame reference):
 * `pages` are views of them, a run of adjacent frames each; `data` joins them into one buffer on
 * first use (no copy when they are one run). Read-only memory either way: the daemon holds the
 * frames unchanged until the strategy answers, and not after.
 */
export class FrameReferenceWrite implements StrategyRequest {
  readonly op = 'write';
  private joined: Buffer | undefined;

  constructor(
    readonly vmid: number,
    readonly page: number,
    readonly npages: number,
    readonly pages: readonly Uint8Array[],
    /** Where a joined copy gets its buffer. */
    private readonly allocate: (size: number) => Buffer,
  ) {}

  get data(): Uint8Array {
    if (this.pages.length === 1) return this.pages[0];
    if (this.joined === undefined) {
      let size = 0;
      for (const piece of this.pages) size += piece.length;
      const joined = this.allocate(size);
      let at = 0;
      for (const piece of this.pages) {
        copyBytes(joined, at, piece);
        at += piece.length;
      }
      this.joined = joined;
    }
    return this.joined;
  }

  /** The buffer `data` was joined into, if it was (handed back once the strategy settled). */
  get copy(): Buffer | undefined {
    return this.joined;
  }
}

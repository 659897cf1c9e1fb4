import { copyBytes } from '../copy-bytes.js';
import type { StrategyRequest } from './client.js';

/** A strategy write by frame reference, and the buffer its `data` was joined into, if it was (to hand back once the strategy settled). */
export interface FrameReferenceWrite {
  request: StrategyRequest;
  joined(): Buffer | undefined;
}

/**
 * A strategy write whose pages lie in the daemon's shared frames (a write by frame reference):
 * `pages` are views of them, a run of adjacent frames each; `data` joins them into one buffer on
 * first use (no copy when they are one run). Read-only memory either way (views of a
 * SharedArrayBuffer where not joined): the daemon holds the frames unchanged until the strategy
 * answers, and not after. `data` is an own, enumerable getter: a copy of the request made with
 * spread syntax carries the bytes.
 */
export function frameReferenceWrite(vmid: number, page: number, npages: number, pages: readonly Uint8Array[], allocate: (size: number) => Buffer): FrameReferenceWrite {
  let joined: Buffer | undefined;
  const request: StrategyRequest = {
    op: 'write',
    vmid,
    page,
    npages,
    pages,
    get data(): Uint8Array {
      if (pages.length === 1) return pages[0];
      if (joined === undefined) {
        let size = 0;
        for (const piece of pages) size += piece.length;
        joined = allocate(size);
        let at = 0;
        for (const piece of pages) {
          copyBytes(joined, at, piece);
          at += piece.length;
        }
      }
      return joined;
    },
  };
  return { request, joined: () => joined };
}

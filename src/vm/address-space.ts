import { REGION_BYTES } from '../constants.js';
import { PagerError } from '../errors.js';
import type { Segment } from './segment.js';

export type Access = 'read' | 'write';

/** A 256 MiB window of a segment mapped into one region. */
export interface SegmentRegion {
  kind: 'segment';
  segment: Segment;
  /** Segment offset that the region's first byte maps (a multiple of REGION_BYTES). */
  windowBase: number;
  access: Access;
}

/** An I/O region: a stand-in for device memory that page services refuse. */
export interface IoRegion {
  kind: 'io';
  bytes: number;
}

export type Region = SegmentRegion | IoRegion;

/** Regions per address space; region 0 is never handed out, so address 0 is never valid. */
export const REGION_COUNT = 256;

/**
 * A client's address space: a table of 256 MiB regions. Address = region × 2^28 + offset in region.
 * Changed only by vm_att / io_att / vm_det of the owning client.
 */
export class AddressSpace {
  private readonly regions: (Region | undefined)[] = new Array(REGION_COUNT).fill(undefined);

  /** Maps `region` into the lowest free slot and answers the slot's base address. */
  attach(region: Region): number {
    for (let r = 1; r < REGION_COUNT; r++) {
      if (this.regions[r] === undefined) {
        this.regions[r] = region;
        return r * REGION_BYTES;
      }
    }
    throw new PagerError('no-free-region');
  }

  /** Unmaps the region holding vaddr. */
  detach(vaddr: number): void {
    const r = regionIndex(vaddr);
    if (r < 0 || this.regions[r] === undefined) throw new PagerError('region-not-defined');
    this.regions[r] = undefined;
  }

  /** The region holding vaddr, or undefined. A window of a deleted segment is no longer defined. */
  lookup(vaddr: number): Region | undefined {
    const r = regionIndex(vaddr);
    const region = r < 0 ? undefined : this.regions[r];
    if (region?.kind === 'segment' && region.segment.deleted) return undefined;
    return region;
  }
}

function regionIndex(vaddr: number): number {
  if (!Number.isSafeInteger(vaddr) || vaddr < 0) return -1;
  const r = Math.floor(vaddr / REGION_BYTES);
  return r >= 1 && r < REGION_COUNT ? r : -1;
}

export function offsetInRegion(vaddr: number): number {
  return vaddr % REGION_BYTES;
}

import { V_CLIENT, V_INTRSEG, V_LARGE, V_LGPAGE, V_PERSISTENT, V_WORKING } from '../constants.js';
import { IoLevel } from './io-level.js';
import { PageTable } from './page-table.js';

export type SegmentType = typeof V_WORKING | typeof V_CLIENT | typeof V_PERSISTENT;

export const SEGMENT_TYPES: readonly number[] = [V_WORKING, V_CLIENT, V_PERSISTENT];
export const SEGMENT_OPTIONS = V_LARGE | V_INTRSEG | V_LGPAGE;

/** Most pages a segment notes as modified between syncs (~0.7 MiB of set at most); past it a sync scans. */
const MAX_NOTED = 16384;

/** What the store keeps of a segment (everything but its pages). */
export interface SegmentRecord {
  vmid: number;
  type: SegmentType;
  options: number;
  /** Bytes services may touch: vms_create's size rounded up to whole pages. */
  extent: number;
  uid: number;
  gid: number;
  /** Permission bits, as for files (0o600 by default). */
  mode: number;
}

/**
 * A segment (AIX: virtual memory object). The record is fixed at creation; the page table, I/O
 * level and modified bit are changed by the engine on the main thread.
 */
export class Segment {
  readonly vmid: number;
  readonly type: SegmentType;
  readonly options: number;
  readonly extent: number;
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
  /** Number of pages in the extent. */
  readonly pageCount: number;
  readonly pages = new PageTable();
  readonly io = new IoLevel();
  /** The segment modified bit of vm_qmodify: set when a page-out completes, cleared by vm_qmodify. */
  pagedOutSinceQuery = false;
  /** Set by vms_delete: the vmid is invalid at once, even while frames of it finish their I/O. */
  deleted = false;
  /**
   * Pages that became modified since a sync of the whole segment last took this set (or a
   * superset: some may be clean or gone since), so that sync looks at them instead of every
   * resident page. Undefined until the first such sync (a segment nobody syncs whole keeps no
   * set) and once more than MAX_NOTED were noted: the next sync scans every resident page.
   */
  modifiedSinceSync: Set<number> | undefined;

  /** A page became modified (Vmm notes it). */
  noteModified(pno: number): void {
    const noted = this.modifiedSinceSync;
    if (noted === undefined) return;
    noted.add(pno);
    if (noted.size > MAX_NOTED) this.modifiedSinceSync = undefined;
  }

  constructor(record: SegmentRecord, pageSize: number) {
    this.vmid = record.vmid;
    this.type = record.type;
    this.options = record.options;
    this.extent = record.extent;
    this.uid = record.uid;
    this.gid = record.gid;
    this.mode = record.mode;
    this.pageCount = record.extent / pageSize;
  }

  get largePages(): boolean {
    return (this.options & V_LGPAGE) !== 0;
  }

  get interruptible(): boolean {
    return (this.options & V_INTRSEG) !== 0;
  }

  get record(): SegmentRecord {
    const { vmid, type, options, extent, uid, gid, mode } = this;
    return { vmid, type, options, extent, uid, gid, mode };
  }
}

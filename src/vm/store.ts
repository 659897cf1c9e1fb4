import type { SegmentRecord } from './segment.js';

/** One page to write: its identity and the frame bytes to write from (not copied). */
export interface PageWrite {
  vmid: number;
  pno: number;
  /** The page's bytes: its frame's, in place. */
  data: Uint8Array;
  /** The engine's frame holding it (a client file system reading shared frames is told its number); absent when written from elsewhere. */
  frame?: number;
}

/** The two moments of a batch of page-outs. */
export interface WriteTicket {
  /**
   * Settles (never rejects) once the store no longer reads the frames' bytes; until then the
   * engine lets nobody change them. It may settle after `complete`: the engine settles a batch
   * only once its frames are unpinned.
   */
  captured: Promise<void>;
  /**
   * Resolves when every page of the batch is complete in the sense of SPEC §2: data in a fresh
   * slot, flushed, and the metadata pointing at it committed durably. Rejects with a PagerError
   * (EIO, ENOSPC) when the batch failed; then none of it counts, and the pages' old versions stand.
   */
  complete: Promise<void>;
}

/**
 * The backing store the engine pages through (FreeBSD's pager, in spirit). Implemented on a file
 * or block device with SQLite metadata by src/store/; tests may use an in-memory double.
 *
 * Ordering: the store stamps every call in call order. A call's effect on a page is never
 * overridden by an earlier call that completes later (a page-out that finishes after a release or
 * a delete of the same page does not bring the old contents back), and readPage reflects every
 * call made before it, complete or not.
 *
 * Space: a slot is reserved when a page is first modified (reserveSlots), so a page-out never meets
 * a full device. writePages consumes one reservation per page; a failed batch gives them back.
 */
export interface BackingStore {
  readonly pageSize: number;
  /** True once the store has failed permanently (closed after a fatal error). */
  readonly failed: boolean;
  /**
   * Set while the store checks its metadata after open: releases and deletes wait for it (the map
   * must stand still), page-outs too (inside the store). Undefined once done, however it ended.
   */
  readonly checking: Promise<unknown> | undefined;

  /** Every segment the store holds (at start-up). */
  loadSegments(): Promise<SegmentRecord[]>;
  /** Records a new segment durably and answers its vmid (never reused). ENOMEM when full. */
  createSegment(record: Omit<SegmentRecord, 'vmid'>): Promise<number>;
  /**
   * Forgets a segment and frees its slots, durably by the time it returns; throws (EIO) and
   * changes nothing when it cannot. Synchronous, so no page-out can start between the store's
   * change and the engine's: the engine discards its frames right after.
   */
  deleteSegment(vmid: number): void;

  /** Fills `into` with the page's last complete version, or zeros if it has none. EIO on failure. */
  readPage(vmid: number, pno: number, into: Uint8Array): Promise<void>;
  /**
   * readPage without waiting, when the store can (the page has no slot, or its bytes are at hand):
   * answers true once `into` is filled, false if only readPage can fill it. EIO on failure.
   */
  readPageNow(vmid: number, pno: number, into: Uint8Array): boolean;
  /** Starts page-outs of a batch of pages (all of one pager: see pagerOf). */
  writePages(pages: readonly PageWrite[]): WriteTicket;
  /**
   * Which pager pages segment `vmid` (a store that pages some segments elsewhere: a client file
   * system's strategy routine). Pages of different pagers go in separate batches, so one pager's
   * failure is never another's. Absent: one pager for all.
   */
  pagerOf?(vmid: number): number;
  /**
   * Most pages one batch of segment `vmid`'s page-outs holds: a pager that sends each request as
   * it is made (a client file system) starts on the first ones while the rest of a large range's
   * page-out is being prepared. Absent: any number.
   */
  batchPages?(vmid: number): number;
  /**
   * Who is reading page `pno` of `vmid` in for the store right now, when that is one of the
   * engine's clients (a client file system's strategy routine): a wait of that same client on the
   * page would wait on itself (EDEADLK). Absent: nobody.
   */
  pageInServer?(vmid: number, pno: number): object | undefined;
  /** Likewise, who is writing page `pno` of `vmid` out from its frame right now (its frame pinned until then): that client's write of the page would wait on itself. */
  pageOutServer?(vmid: number, pno: number): object | undefined;
  /**
   * False while a new modified page of segment `vmid` must wait for page-outs: the store limits
   * how many pages of some segments' owner may be modified or being written out (a client file
   * system's segments: only it can give their frames back), and the owner is at the limit. False
   * for every segment sharing that limit then. Absent: always true.
   */
  mayModify?(vmid: number): boolean;
  /** False while pages of segment `vmid` cannot be paged out at all (their pager is gone): the pageout daemon leaves them. Absent: always true. */
  mayPageOut?(vmid: number): boolean;
  /**
   * Makes pages [pfirst, pfirst + npages) read as zeros from now on, durably by the time it
   * returns; throws (EIO) and changes nothing when it cannot. Synchronous, as deleteSegment.
   */
  releasePages(vmid: number, pfirst: number, npages: number): void;

  /** Reserves `count` slots for newly modified pages of segment `vmid`; false when the store has no room. */
  reserveSlots(count: number, vmid: number): boolean;
  /** Gives back reservations of pages of segment `vmid` that will not be paged out after all. */
  unreserveSlots(count: number, vmid: number): void;
}

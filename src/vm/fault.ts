import { PagerError, isPagerError } from '../errors.js';
import { FrameFlag } from './frame-layout.js';
import { HOLDS_DATA, PageState } from './page-state.js';
import type { Segment } from './segment.js';
import type { Vmm } from './vmm.js';

/**
 * The fault path: making a page resident so its bytes can be read or written.
 *
 * residentFrame() answers at once when the page is already usable (the hot path: no await, no
 * allocation); pageInNow() brings a page in at once when nothing needs a wait; fault() does the
 * rest: waits out page-ins and pinned frames, allocates a frame and reads the page's last
 * complete version (or zeros) from the store.
 */

/**
 * The frame of page `pno` if it can be used right now: holding data and, for a write, not pinned
 * by a page-out that is still reading its bytes. Otherwise -1.
 */
export function residentFrame(vmm: Vmm, seg: Segment, pno: number, forWrite: boolean): number {
  const f = seg.pages.get(pno);
  if (f < 0) return -1;
  const t = vmm.pool.table;
  if (!HOLDS_DATA[t.state[f]]) return -1; // in page-in
  if (forWrite && t.pins[f] !== 0) return -1;
  return f;
}

/**
 * Page-in without waiting: when page `pno` has no frame, a frame can be had at once and the store
 * can fill it at once (an unmapped page, or bytes in the page cache), the page becomes resident
 * and CLEAN and its frame is answered. Otherwise -1, and nothing changed (a frame taken is given
 * back). EIO as the store answers it, with nothing linked.
 */
export function pageInNow(vmm: Vmm, seg: Segment, pno: number): number {
  if (seg.pages.get(pno) >= 0) return -1;
  vmm.checkPinLimit(seg);
  const f = vmm.tryAllocateFrame();
  if (f < 0) return -1;
  let filled: boolean;
  try {
    filled = vmm.store.readPageNow(seg.vmid, pno, vmm.pool.frameBytes(f));
  } catch (err) {
    vmm.freeFrame(f);
    throw asPageInError(err);
  }
  if (!filled) {
    vmm.freeFrame(f);
    return -1;
  }
  vmm.link(seg, pno, f);
  vmm.transition(f, PageState.PAGE_IN);
  vmm.transition(f, PageState.CLEAN);
  vmm.pool.publish(f);
  vmm.counters.misses++;
  vmm.counters.pageIns++;
  return f;
}

/**
 * Makes page `pno` of `seg` resident and usable and answers its frame. On entry the segment is
 * live and pno within its extent. Throws EINVAL (no-such-segment) if the segment is deleted
 * meanwhile, ENOMEM (no-frame) when no frame comes in time, EIO when the page-in fails, EDEADLK
 * when `waiter` would wait on a page-in, or a write would wait on a page-out from the frame, that
 * its own strategy routine serves.
 */
export async function fault(vmm: Vmm, seg: Segment, pno: number, forWrite: boolean, signal?: AbortSignal, waiter?: object): Promise<number> {
  for (;;) {
    if (seg.deleted) throw new PagerError('no-such-segment');
    const f = seg.pages.get(pno);
    if (f >= 0) {
      const usable = residentFrame(vmm, seg, pno, forWrite);
      if (usable >= 0) return usable;
      if (forWrite && vmm.pinnedByOrphansOnly(f)) {
        await moveFromOrphan(vmm, seg, pno, f, signal);
        continue;
      }
      if (waiter !== undefined) {
        if (vmm.pool.table.state[f] === PageState.PAGE_IN && vmm.store.pageInServer?.(seg.vmid, pno) === waiter) {
          throw new PagerError('deadlock', `page ${pno} of segment ${seg.vmid} is being read in by this connection's own strategy routine`);
        }
        if (forWrite && vmm.store.pageOutServer?.(seg.vmid, pno) === waiter) {
          throw new PagerError('deadlock', `page ${pno} of segment ${seg.vmid} is being written out from its frame by this connection's own strategy routine`);
        }
      }
      await vmm.waitFrame(f, signal);
      continue;
    }
    vmm.counters.misses++;
    vmm.checkPinLimit(seg);
    const frame = await vmm.allocateFrame(signal);
    if (seg.deleted || seg.pages.get(pno) >= 0 || !vmm.mayPin(seg)) {
      // Someone else brought the page in, deleted the segment, or pinned the owner's last share
      // while we waited for a frame: look again.
      vmm.freeFrame(frame);
      continue;
    }
    await pageIn(vmm, seg, pno, frame);
  }
}

/**
 * Gives page `pno` a frame of its own when its frame f is pinned only by orphans (writes by frame
 * reference whose device failed): the file system may read f as long as its process lives, and a
 * writer of the page must not wait that long. Waits for a free frame like a fault.
 */
async function moveFromOrphan(vmm: Vmm, seg: Segment, pno: number, f: number, signal?: AbortSignal): Promise<void> {
  const g = await vmm.allocateFrame(signal);
  // Looked at again: the page may have moved, gone or been let go while we waited.
  if (seg.deleted || seg.pages.get(pno) !== f || !vmm.pinnedByOrphansOnly(f)) vmm.freeFrame(g);
  else vmm.movePage(seg, pno, f, g);
}

/**
 * Links a free frame to page `pno` in PAGE_IN state and fills it from the store. Resolves when
 * the page-in is over (also when the page was discarded meanwhile: the frame is then freed).
 * Rejects with EIO if the read failed (unless the page was discarded meanwhile); the frame is
 * freed and waiters are woken to retry.
 */
export async function pageIn(vmm: Vmm, seg: Segment, pno: number, f: number): Promise<void> {
  const t = vmm.pool.table;
  vmm.link(seg, pno, f);
  vmm.transition(f, PageState.PAGE_IN);
  t.pins[f]++;
  vmm.counters.pageIns++;
  let failure: unknown;
  try {
    await vmm.store.readPage(seg.vmid, pno, vmm.pool.frameBytes(f));
  } catch (err) {
    failure = err;
  }
  t.pins[f]--;
  const discarded = (t.flags[f] & FrameFlag.DISCARD) !== 0;
  if (failure !== undefined || discarded) {
    if (!discarded) vmm.unlink(seg, pno);
    vmm.freeFrame(f);
  } else {
    vmm.transition(f, PageState.CLEAN);
    if ((t.flags[f] & FrameFlag.FREE_AT_IO_DONE) !== 0) vmm.evictClean(f);
    else {
      vmm.pool.publish(f);
      vmm.frameEvents.wake(f);
    }
  }
  // A page discarded while it was read has no reader to tell: whoever faults it next reads again.
  if (failure !== undefined && !discarded) throw asPageInError(failure);
}

/** A store's read failure as the mover sees it: the store's own EIO, or page-in-failed. */
function asPageInError(err: unknown): PagerError {
  return isPagerError(err) ? err : new PagerError('page-in-failed', String(err));
}

/**
 * Makes page `pno` resident, zero-filled and modified without a page-in (vm_makep, and writes
 * that cover a whole absent page). Waits for room first when the store limits the segment's
 * modified pages (Vmm.roomToModify), then reserves the page's slot: ENOSPC changes nothing.
 * A page that is resident already is left as it is. Answers its frame. Without `publish`, readers
 * of shared frames do not see it yet: a write is about to fill it (its zeros never were the page).
 */
export async function makePage(vmm: Vmm, seg: Segment, pno: number, signal?: AbortSignal, publish = true): Promise<number> {
  for (;;) {
    if (seg.deleted) throw new PagerError('no-such-segment');
    const resident = seg.pages.get(pno);
    if (resident >= 0) return resident;
    if (vmm.mustWaitForRoom(seg, -1)) {
      await vmm.roomToModify(seg, signal);
      continue;
    }
    vmm.checkPinLimit(seg);
    const reserve = !seg.largePages;
    if (reserve && !vmm.store.reserveSlots(1, seg.vmid)) throw new PagerError('no-backing-space');
    let f: number;
    try {
      f = await vmm.allocateFrame(signal);
    } catch (err) {
      if (reserve) vmm.unreserve(seg);
      throw err;
    }
    if (seg.deleted || seg.pages.get(pno) >= 0 || !vmm.mayPin(seg)) {
      if (reserve) vmm.unreserve(seg);
      vmm.freeFrame(f);
      continue;
    }
    vmm.pool.zero(f);
    vmm.link(seg, pno, f);
    vmm.transition(f, PageState.MODIFIED);
    if (publish) vmm.pool.publish(f);
    return f;
  }
}

import { fault, makePage, pageInNow, residentFrame } from './fault.js';
import { FrameFlag } from './frame-layout.js';
import type { Segment } from './segment.js';
import { IovCursor, type Uio } from '../uio.js';
import type { Vmm } from './vmm.js';

/**
 * One checked vm_move/vm_uiomove in progress: the page-by-page copy between a segment and a uio.
 * `copyResident` copies without waiting while the pages it reaches are usable; `run` waits for
 * the page that stopped it and goes on. A move of resident pages (or of pages the store has at
 * hand) thus finishes synchronously, without a promise (the common case, and most of a request's
 * cost otherwise). The uio's resid and offset follow every page copied, so a move ended by an
 * error reports what it moved.
 */
export class Move {
  moved = 0;
  /** The page this move last faulted in: its next look is not a hit. */
  private faulted = -1;
  private readonly cursor: IovCursor;

  constructor(
    private readonly vmm: Vmm,
    private readonly seg: Segment,
    private readonly offset: number,
    private readonly n: number,
    private readonly write: boolean,
    private readonly uio: Uio,
    uioTotal: number,
    /** Ends the move's waits (the client gone, or its V_INTRSEG request cancelled). */
    private readonly endWaits: AbortSignal,
    /** The client moving (a wait on its own strategy routine answers EDEADLK). */
    private readonly waiter?: object,
  ) {
    this.cursor = new IovCursor(uio.iov, uioTotal - uio.resid);
  }

  /** Copies while pages are usable now; true once the whole move is done. */
  copyResident(): boolean {
    const { vmm, seg, write, uio, cursor } = this;
    const ps = vmm.pageSize;
    const flags = vmm.pool.table.flags;
    while (this.moved < this.n) {
      const pos = this.offset + this.moved;
      const pno = Math.floor(pos / ps);
      const inPage = pos - pno * ps;
      const len = Math.min(ps - inPage, this.n - this.moved);
      let f = residentFrame(vmm, seg, pno, write);
      // A page not resident is read in at once when nothing needs a wait (one to be made is left
      // to run()).
      if (f < 0 && !this.makes(pno, len)) {
        f = pageInNow(vmm, seg, pno);
        if (f >= 0) this.faulted = pno;
      }
      if (f < 0) return false;
      // A page newly modified past the store's limit waits for room (run()).
      if (write && vmm.mustWaitForRoom(seg, f)) return false;
      if (pno !== this.faulted) vmm.counters.hits++;
      const at = vmm.pool.offsetOf(f) + inPage;
      if (write) {
        vmm.markModified(f);
        const published = vmm.pool.changing(f);
        cursor.readInto(vmm.pool.bytes, at, len);
        if (published) vmm.pool.changed(f);
        else vmm.pool.publish(f); // a page made for this write: shown once it holds the write
      } else {
        cursor.writeFrom(vmm.pool.bytes, at, len);
      }
      flags[f] |= FrameFlag.REFERENCED;
      this.moved += len;
      uio.resid -= len;
      uio.offset += len;
    }
    return true;
  }

  /** Finishes the move, waiting for each page that is not usable yet. */
  async run(): Promise<number> {
    const { vmm, seg, write } = this;
    const ps = vmm.pageSize;
    while (!this.copyResident()) {
      const pos = this.offset + this.moved;
      const pno = Math.floor(pos / ps);
      const len = Math.min(ps - (pos - pno * ps), this.n - this.moved);
      // Then look again: anything may have happened while we waited.
      if (write && vmm.mustWaitForRoom(seg, seg.pages.get(pno))) {
        await vmm.roomToModify(seg, this.endWaits);
        continue;
      }
      if (this.makes(pno, len)) await makePage(vmm, seg, pno, this.endWaits, false);
      else await fault(vmm, seg, pno, write, this.endWaits, this.waiter);
      this.faulted = pno;
    }
    return this.moved;
  }

  /** A write of `len` bytes covering all of page `pno`, which has no frame: made, not read in. */
  private makes(pno: number, len: number): boolean {
    return this.write && len === this.vmm.pageSize && this.seg.pages.get(pno) < 0;
  }
}

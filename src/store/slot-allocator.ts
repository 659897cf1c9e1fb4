/**
 * Which backing slots are free, and how many are promised.
 *
 * Slots at or above `high` have never held data. Below it, a bitmap marks the free ones (set bit
 * = free). Allocation is next-fit, so pages written together land in contiguous runs when the
 * free space allows, and writev can coalesce them.
 *
 * Accounting (every slot is in exactly one of these, or free):
 *   mapped   - referenced by a page's committed metadata
 *   inFlight - allocated to a page-out not yet committed
 *   limbo    - released (or overtaken by a release), not yet given back to the device (hole punch / discard)
 * (a slot a page left in a page-out stays mapped until that page-out's flush has succeeded)
 * and `reserved` counts slots promised to modified pages (SPEC §2: a page-out never meets a full
 * store). reserve() refuses once mapped + inFlight + reserved would pass capacity − spare.
 */
export class SlotAllocator {
  readonly capacity: number;
  private readonly spare: number;
  private readonly freeBits: Uint8Array;
  private freeBelowHigh = 0;
  private cursor = 0;
  /** Slots at or above this have never been used. Persisted as meta.slot_high. */
  high: number;
  mapped: number;
  inFlight = 0;
  reserved = 0;
  limbo = 0;
  /**
   * Slots made free in memory that the durable free-slot map does not list yet (written by the
   * next commit, which takes them; one taken again since is no longer free). A set: while
   * commits fail, the same slots are taken and given back cycle after cycle.
   */
  readonly unrecorded = new Set<number>();

  /** `free`: the durable free-slot bitmap (set bit = free; bits at or above `high` are ignored). */
  constructor(capacity: number, spare: number, high: number, free: Uint8Array) {
    this.capacity = capacity;
    this.spare = spare;
    this.high = high;
    this.freeBits = new Uint8Array(Math.ceil(capacity / 8));
    this.freeBits.set(free.subarray(0, Math.ceil(high / 8)));
    if (high % 8 !== 0) this.freeBits[high >> 3] &= (1 << (high % 8)) - 1;
    for (let i = 0; i < Math.ceil(high / 8); i++) this.freeBelowHigh += popcount8(this.freeBits[i]);
    this.mapped = high - this.freeBelowHigh;
  }

  /** Slots that could still be reserved. */
  get available(): number {
    return this.capacity - this.spare - this.mapped - this.inFlight - this.reserved - this.limbo;
  }

  reserve(count: number): boolean {
    if (count > this.available) return false;
    this.reserved += count;
    return true;
  }

  unreserve(count: number): void {
    if (count > this.reserved) throw new Error(`unreserve ${count} with only ${this.reserved} reserved`);
    this.reserved -= count;
  }

  /** Allocates `count` slots for a page-out, consuming as many reservations. Ascending order. */
  take(count: number): number[] {
    if (count > this.reserved) throw new Error(`take ${count} slots with only ${this.reserved} reserved`);
    const slots: number[] = [];
    let wrapped = false;
    while (slots.length < count && this.freeBelowHigh > 0) {
      const slot = this.nextFree();
      wrapped ||= slots.length > 0 && slot < slots[slots.length - 1];
      this.clearFree(slot);
      slots.push(slot);
    }
    while (slots.length < count) {
      if (this.high >= this.capacity) throw new Error('slot allocator exhausted despite reservations');
      slots.push(this.high++);
    }
    this.reserved -= count;
    this.inFlight += count;
    return wrapped ? slots.sort((a, b) => a - b) : slots; // next-fit answers ascending slots until it wraps
  }

  /** A page-out failed: its slots are free again and its pages need their reservations back. */
  giveBack(slots: readonly number[]): void {
    for (const slot of slots) this.setFree(slot);
    for (const slot of slots) this.unrecorded.add(slot);
    this.inFlight -= slots.length;
    this.reserved += slots.length;
  }

  /**
   * A page-out committed: `kept` of its slots are now mapped, the rest (pages released while it
   * was in flight) go to limbo until given back to the device. The slots its pages left stay
   * mapped until its flush has succeeded (unmapped).
   */
  committed(batchSize: number, kept: number): void {
    this.inFlight -= batchSize;
    this.mapped += kept;
    this.limbo += batchSize - kept;
  }

  /**
   * Slots no page points at any more are free at once (they are about to be written again, so they
   * are not given back to the device). `unrecorded`: the free-slot map does not list them yet.
   */
  unmapped(slots: readonly number[], unrecorded: boolean): void {
    this.mapped -= slots.length;
    for (const slot of slots) {
      this.setFree(slot);
      if (unrecorded) this.unrecorded.add(slot);
    }
  }

  /** A committed page-out was rolled back: its pages need their reservations again. */
  restoreReservations(count: number): void {
    this.reserved += count;
  }

  /** Pages were released or deleted: their slots go to limbo. */
  released(count: number): void {
    this.mapped -= count;
    this.limbo += count;
  }

  /** Slots back from limbo (punched or discarded): free for reuse. */
  freed(slots: readonly number[]): void {
    for (const slot of slots) this.setFree(slot);
    this.limbo -= slots.length;
  }

  isFree(slot: number): boolean {
    return slot >= this.high || (this.freeBits[slot >> 3] & (1 << (slot & 7))) !== 0;
  }

  private nextFree(): number {
    for (let i = 0; i < this.high; i++) {
      let slot = this.cursor + i;
      if (slot >= this.high) slot -= this.high;
      if ((slot & 7) === 0 && this.freeBits[slot >> 3] === 0 && slot + 8 <= this.high) {
        i += 7; // skip a whole byte of used slots
        continue;
      }
      if ((this.freeBits[slot >> 3] & (1 << (slot & 7))) !== 0) {
        this.cursor = slot + 1;
        return slot;
      }
    }
    throw new Error('free slot count and bitmap disagree');
  }

  private setFree(slot: number): void {
    if (slot >= this.high) return; // never used: free by definition
    const bit = 1 << (slot & 7);
    if ((this.freeBits[slot >> 3] & bit) !== 0) throw new Error(`slot ${slot} freed twice`);
    this.freeBits[slot >> 3] |= bit;
    this.freeBelowHigh++;
  }

  private clearFree(slot: number): void {
    this.freeBits[slot >> 3] &= ~(1 << (slot & 7));
    this.freeBelowHigh--;
  }
}

function popcount8(b: number): number {
  let n = 0;
  for (; b !== 0; b &= b - 1) n++;
  return n;
}

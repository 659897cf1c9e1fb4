import type { BackingDevice } from './device.js';

/**
 * Slots no page points at any more, on their way back to the device: hole-punched (a file) or
 * discarded (a block device) in contiguous runs, on the next turn of the event loop, best effort.
 * Only then are they free (`freed`), so a slot is never handed out while its old bytes might
 * still be given back.
 */
export class Limbo {
  private queue: number[] = [];
  private scheduled = false;

  constructor(
    private readonly device: BackingDevice,
    private readonly slotPosition: (slot: number) => number,
    private readonly pageSize: number,
    /** Told the slots once they are given back. */
    private readonly freed: (slots: readonly number[]) => void,
    private readonly warn: (obj: object, msg: string) => void,
  ) {}

  /** Queues slots to be given back (on the next turn). */
  add(slots: readonly number[]): void {
    if (slots.length === 0) return;
    for (const slot of slots) this.queue.push(slot); // not push(...slots): a segment may hold millions
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  /** Gives back every queued slot now. */
  drain(): void {
    this.scheduled = false;
    const slots = this.queue.sort((a, b) => a - b);
    this.queue = [];
    let start = 0;
    for (let i = 1; i <= slots.length; i++) {
      if (i < slots.length && slots[i] === slots[i - 1] + 1) continue;
      const first = slots[start];
      const count = i - start;
      try {
        this.device.deallocate(this.slotPosition(first), count * this.pageSize);
      } catch (err) {
        this.warn({ slot: first, count, err }, 'could not give slots back to the device; they stay allocated');
      }
      start = i;
    }
    this.freed(slots);
  }
}

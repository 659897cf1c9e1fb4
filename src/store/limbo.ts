import type { BackingDevice, ByteRange } from './device.js';

/**
 * Slots no page points at any more, on their way back to the device: hole-punched (a file) or
 * discarded (a block device) in contiguous runs, in the thread pool, best effort. Only then are
 * they free (`freed`), so a slot is never handed out while its old bytes might still be given back.
 */
export class Limbo {
  private queue: number[] = [];
  private scheduled = false;
  /** Every drain started so far (close waits for it). */
  private drained: Promise<void> = Promise.resolve();

  constructor(
    private readonly device: BackingDevice,
    private readonly slotPosition: (slot: number) => number,
    private readonly pageSize: number,
    /** Told the slots once they are given back. */
    private readonly freed: (slots: readonly number[]) => void,
    private readonly warn: (obj: object, msg: string) => void,
  ) {}

  /** Queues slots to be given back (from the next turn of the event loop on). */
  add(slots: readonly number[]): void {
    if (slots.length === 0) return;
    for (const slot of slots) this.queue.push(slot); // not push(...slots): a segment may hold millions
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.drain());
    }
  }

  /** Gives back every slot queued so far; resolves once they and those of earlier drains are free. */
  drain(): Promise<void> {
    this.scheduled = false;
    const slots = this.queue.sort((a, b) => a - b);
    this.queue = [];
    const ranges: ByteRange[] = [];
    let start = 0;
    for (let i = 1; i <= slots.length; i++) {
      if (i < slots.length && slots[i] === slots[i - 1] + 1) continue;
      ranges.push({ offset: this.slotPosition(slots[start]), length: (i - start) * this.pageSize });
      start = i;
    }
    let given: Promise<void>;
    try {
      given = ranges.length === 0 ? Promise.resolve() : this.device.deallocate(ranges);
    } catch (err) {
      given = Promise.reject(err); // a device closed under it: warned, as a failed punch
    }
    const done = given
      .catch((err: unknown) => this.warn({ ranges: ranges.length, first: ranges[0], err }, 'could not give slots back to the device; they stay allocated'))
      .then(() => this.freed(slots));
    this.drained = Promise.all([this.drained, done]).then(() => undefined);
    return this.drained;
  }
}

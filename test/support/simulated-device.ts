import { crc32c } from '../../src/native/addon.js';
import { writeThenSync, type BackingDevice, type ByteRange, type WriteRun } from '../../src/store/device.js';

/**
 * A simulated storage layer for power-loss tests. Writes land in a volatile cache; fdatasync makes
 * the writes completed before it durable. At a crash, each unsynced write is independently dropped,
 * applied whole, or torn at 512-byte sector granularity, in a shuffled order (so unsynced writes
 * may be reordered). A device "dies" after a chosen number of operations (or during the last
 * one, if that is a flush): every later operation fails with EIO, and `onDeath` lets the test
 * stop the process's other effects (its metadata commits) at that moment, as a power loss would.
 */
const SECTOR = 512;

interface CachedWrite {
  position: number;
  data: Uint8Array;
  completed: boolean;
}

export class SimulatedDisk {
  readonly image: Uint8Array;

  constructor(readonly size: number) {
    this.image = new Uint8Array(size);
  }
}

function eio(): Error {
  return Object.assign(new Error('EIO: simulated power loss'), { code: 'EIO' });
}

export class SimulatedDevice implements BackingDevice {
  readonly kind = 'file' as const;
  readonly size: number;
  /** Device operations (writev, datasync) so far. */
  ops = 0;
  dead = false;
  private cache: CachedWrite[] = [];

  constructor(
    private readonly disk: SimulatedDisk,
    private readonly random: () => number,
    /** Operations allowed before the device dies (Infinity: never). */
    public crashAfter = Infinity,
  ) {
    this.size = disk.size;
  }

  /** Called once when the device dies: the power is gone, so is the process using it. */
  onDeath: () => void = () => {};

  private op(): void {
    if (this.dead || this.ops >= this.crashAfter) {
      this.die();
      throw eio();
    }
    this.ops++;
  }

  private die(): void {
    if (this.dead) return;
    this.dead = true;
    this.onDeath();
  }

  /** A random number of event-loop turns, so operations overlap and complete out of order. */
  private async delay(): Promise<void> {
    const turns = Math.floor(this.random() * 3);
    for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
  }

  async read(into: Uint8Array, position: number): Promise<void> {
    this.readNow(into, position);
  }

  /** Everything is at hand: the disk image, and over it the cached writes. */
  readNow(into: Uint8Array, position: number): boolean {
    if (this.dead) throw eio();
    into.set(this.disk.image.subarray(position, position + into.length));
    for (const w of this.cache) {
      const from = Math.max(position, w.position);
      const to = Math.min(position + into.length, w.position + w.data.length);
      if (from < to) into.set(w.data.subarray(from - w.position, to - w.position), from - position);
    }
    return true;
  }

  async writev(buffers: readonly Uint8Array[], position: number, sums?: Uint32Array): Promise<void> {
    this.op();
    if (sums !== undefined) buffers.forEach((b, i) => (sums[i] = crc32c(b)));
    const total = buffers.reduce((n, b) => n + b.length, 0);
    const data = new Uint8Array(total);
    let at = 0;
    for (const b of buffers) {
      data.set(b, at);
      at += b.length;
    }
    const entry: CachedWrite = { position, data, completed: false };
    this.cache.push(entry);
    await this.delay();
    if (this.dead) throw eio();
    entry.completed = true;
  }

  async datasync(): Promise<void> {
    this.op();
    const flushing = this.cache.filter((w) => w.completed);
    await this.delay();
    // The last operation allowed may be a flush the power fails during: nothing of it is durable.
    if (this.ops >= this.crashAfter && this.random() < 0.5) this.die();
    if (this.dead) throw eio();
    for (const w of flushing) this.disk.image.set(w.data, w.position);
    this.cache = this.cache.filter((w) => !flushing.includes(w));
  }

  writeAndSync(runs: readonly WriteRun[], sums: Uint32Array): Promise<void> {
    return writeThenSync(this, runs, sums);
  }

  async deallocate(ranges: readonly ByteRange[]): Promise<void> {
    if (this.dead) throw eio();
    for (const { offset, length } of ranges) this.cache.push({ position: offset, data: new Uint8Array(length), completed: true });
  }

  async close(): Promise<void> {}

  /** Power loss: what reaches the disk of the unsynced writes is up to chance. */
  crash(): void {
    this.dead = true;
    const pending = [...this.cache];
    for (let i = pending.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [pending[i], pending[j]] = [pending[j], pending[i]];
    }
    for (const w of pending) {
      const fate = this.random();
      if (fate < 0.4) continue; // dropped
      if (fate < 0.7) {
        this.disk.image.set(w.data, w.position); // reached the disk whole
        continue;
      }
      for (let s = 0; s < w.data.length; s += SECTOR) {
        if (this.random() < 0.5) this.disk.image.set(w.data.subarray(s, s + SECTOR), w.position + s); // torn
      }
    }
    this.cache = [];
  }
}

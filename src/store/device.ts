import { constants, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { allocate, blockDeviceSize, crc32c, deallocate, readCached, writeRunsAndSync, writevSummed, type WriteRun } from '../native/addon.js';
import { StoreInUseError } from './store-errors.js';
import { readFully } from '../positional-io.js';
import { lockExclusive } from '../file-lock.js';

/**
 * The raw storage under a store: a regular file or a block device, read and written at positions,
 * flushed with fdatasync. Both kinds sit behind this one interface, chosen in openDevice() only.
 */
export interface BackingDevice {
  readonly kind: 'file' | 'block';
  /** Bytes on the device. */
  readonly size: number;
  /** Fills `into` from `position` (through the thread pool: try readNow first where that pays). */
  read(into: Uint8Array, position: number): Promise<void>;
  /** Fills `into` from `position` if that needs no wait (the page cache holds it): answers false otherwise. */
  readNow(into: Uint8Array, position: number): boolean;
  /**
   * Writes the buffers back to back from `position`. With `sums`, also sets sums[i] to the CRC-32C
   * of buffers[i] as written (the buffers must not change until the write settles).
   */
  writev(buffers: readonly Uint8Array[], position: number, sums?: Uint32Array): Promise<void>;
  /** Flushes written data to stable storage (fdatasync). */
  datasync(): Promise<void>;
  /**
   * Writes each run, then flushes (as writev of each, then datasync, but in one hand-off to the
   * thread pool). sums[i] is the CRC-32C of the i-th buffer of all the runs, set before this
   * returns. Rejects with the failing call's error: its `syscall` says which ('fdatasync' for the
   * flush); a failed write is not followed by a flush.
   */
  writeAndSync(runs: readonly WriteRun[], sums: Uint32Array): Promise<void>;
  /**
   * Gives byte ranges back to the device (hole punches in a file, discards on a block device), off
   * the event loop; every range is tried, and the promise rejects with the first failure.
   */
  deallocate(ranges: readonly ByteRange[]): Promise<void>;
  close(): Promise<void>;
}

/** writeAndSync made of a device's own writev and datasync (for devices that have no single call for it). */
export function writeThenSync(device: BackingDevice, runs: readonly WriteRun[], sums: Uint32Array): Promise<void> {
  let i = 0;
  for (const { buffers } of runs) for (const b of buffers) sums[i++] = crc32c(b);
  return (async () => {
    for (const { buffers, position } of runs) await device.writev(buffers, position);
    await device.datasync();
  })();
}

export type { WriteRun };

export interface ByteRange {
  offset: number;
  length: number;
}

export interface DeviceOptions {
  /** Size of a regular file created on first use. */
  createBytes: number;
  /** Allocate the new file's blocks up front instead of leaving it sparse. */
  preallocate: boolean;
}

/** A positional device over an open file handle. */
class HandleDevice implements BackingDevice {
  constructor(
    readonly kind: 'file' | 'block',
    readonly size: number,
    private readonly handle: FileHandle,
  ) {}

  async read(into: Uint8Array, position: number): Promise<void> {
    const done = await readFully(this.handle, into, position);
    into.fill(0, done); // past the end of a sparse file: zeros
  }

  readNow(into: Uint8Array, position: number): boolean {
    // A cached read on the event loop costs a syscall; through the thread pool, hand-offs of ~11 µs.
    return readCached(this.handle.fd, into, position) === into.length;
  }

  writev(buffers: readonly Uint8Array[], position: number, sums = new Uint32Array(buffers.length)): Promise<void> {
    return writevSummed(this.handle.fd, buffers, position, sums); // resumes short writes itself
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  writeAndSync(runs: readonly WriteRun[], sums: Uint32Array): Promise<void> {
    return writeRunsAndSync(this.handle.fd, runs, sums);
  }

  deallocate(ranges: readonly ByteRange[]): Promise<void> {
    return deallocate(this.handle.fd, this.kind === 'block', ranges);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

async function statOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Opens `path` exclusively: a block device with O_EXCL, a regular file (created if missing) with
 * flock. A second pagerd on the same store fails here, at once.
 */
export async function openDevice(path: string, options: DeviceOptions): Promise<BackingDevice> {
  const st = await statOrUndefined(path);
  if (st?.isBlockDevice()) {
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDWR | constants.O_EXCL);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EBUSY') throw new StoreInUseError(`block device ${path} is in use (another pagerd, a mount, or a holder)`);
      throw err;
    }
    return new HandleDevice('block', blockDeviceSize(handle.fd), handle);
  }
  if (st !== undefined && !st.isFile()) throw new Error(`${path} is neither a regular file nor a block device`);
  const handle = await open(path, st === undefined ? constants.O_RDWR | constants.O_CREAT : constants.O_RDWR, 0o600);
  const locked = await lockExclusive(handle.fd).catch(async (err: unknown) => {
    await handle.close();
    throw err;
  });
  if (!locked) {
    await handle.close();
    throw new StoreInUseError(`${path} is in use by another pagerd (it holds the file's lock)`);
  }
  let size = (await handle.stat()).size;
  if (size === 0) {
    if (options.preallocate) allocate(handle.fd, 0, options.createBytes);
    else await handle.truncate(options.createBytes);
    size = options.createBytes;
  }
  return new HandleDevice('file', size, handle);
}

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The native addon (native/pagerd_native.cc): Linux syscalls Node 20 lacks, the page checksum,
 * and a page-out's positional writes with their checksums (in the thread pool). Arguments are
 * checked here; failures are Node-style system errors ({ code, errno, syscall }).
 */
interface Addon {
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  peerGroups(fd: number): number[];
  peerPidfd(fd: number): number;
  processExited(pidfd: number): boolean;
  fileAttribute(fd: number, name: string): Buffer | null;
  setFileAttribute(fd: number, name: string, value: Uint8Array | null): boolean;
  setSendBuffer(fd: number, bytes: number): number;
  blockDeviceSize(fd: number): number;
  blockSectorSize(fd: number): number;
  allocate(fd: number, offset: number, length: number): void;
  deallocate(fd: number, block: boolean, ranges: Float64Array): Promise<void>;
  sdNotify(socketPath: string, state: string): void;
  mallocTrim(): boolean;
  sharedMemory(name: string, bytes: number): { fd: number; buffer: SharedArrayBuffer };
  mapShared(fd: number, bytes: number, writable: boolean): SharedArrayBuffer;
  reopenFd(fd: number, writable: boolean): number;
  sendWithFds(socketFd: number, bytes: Uint8Array, fds: number[]): void;
  exchangeForFds(socketPath: string, bytes: Uint8Array, frames: number, timeoutMs: number): Promise<{ frames: Buffer[]; fds: number[] }>;
  closeFd(fd: number): void;
  crc32c(bytes: Uint8Array): number;
  copyBytes(dst: Uint8Array, dstStart: number, src: Uint8Array, srcStart: number, n: number): boolean;
  readCached(fd: number, into: Uint8Array, position: number): number;
  writeRuns(fd: number, positions: Float64Array, counts: Uint32Array, backings: Uint8Array[], which: Uint32Array, offsets: Float64Array, lengths: Uint32Array, sums: Uint32Array, sumNow: boolean, sync: boolean, startWriteback: boolean): Promise<void>;
}

let addon: Addon | undefined;

function load(): Addon {
  if (addon === undefined) {
    const require = createRequire(import.meta.url);
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => Addon;
    // From src/native/ or dist/src/native/, the addon's folder is native/ at the package root.
    const here = fileURLToPath(new URL('.', import.meta.url));
    const root = here.includes('/dist/') ? new URL('../../../', import.meta.url) : new URL('../../', import.meta.url);
    addon = nodeGypBuild(fileURLToPath(new URL('native/', root)));
  }
  return addon;
}

function checkFd(fd: number): void {
  if (!Number.isInteger(fd) || fd < 0) throw new TypeError(`not a file descriptor: ${fd}`);
}

function checkPosition(position: number): void {
  if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`bad position ${position}`);
}

function checkRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0) {
    throw new RangeError(`bad byte range ${offset}+${length}`);
  }
}

/** A pidfd of the process that connected the peer end of a Unix socket (SO_PEERPIDFD); the caller closes it (closeFd). */
export function peerPidfd(fd: number): number {
  checkFd(fd);
  return load().peerPidfd(fd);
}

/** True once the process of `pidfd` has exited. */
export function processExited(pidfd: number): boolean {
  checkFd(pidfd);
  return load().processExited(pidfd);
}

/** The bytes of extended attribute `name` of open file `fd`, or null where it has none (or its file system keeps none). */
export function fileAttribute(fd: number, name: string): Buffer | null {
  checkFd(fd);
  return load().fileAttribute(fd, name);
}

/** Sets extended attribute `name` of open file `fd` (removes it: null); false where its file system keeps none, or there was none to remove. */
export function setFileAttribute(fd: number, name: string, value: Uint8Array | null): boolean {
  checkFd(fd);
  return load().setFileAttribute(fd, name, value);
}

/** The credentials of the peer of a connected Unix socket (SO_PEERCRED). */
export function peerCred(fd: number): { pid: number; uid: number; gid: number } {
  checkFd(fd);
  return load().peerCred(fd);
}

/** The supplementary groups of the peer of a connected Unix socket, as when it connected (SO_PEERGROUPS). */
export function peerGroups(fd: number): number[] {
  checkFd(fd);
  return load().peerGroups(fd);
}

/** Asks for a socket send buffer of `bytes` (SO_SNDBUF, capped by net.core.wmem_max); answers the buffer the socket has now. */
export function setSendBuffer(fd: number, bytes: number): number {
  checkFd(fd);
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0x7fffffff) throw new RangeError(`bad buffer size ${bytes}`);
  return load().setSendBuffer(fd, bytes);
}

/** The addon's memmove between byte arrays (ranges checked by the caller: see copyBytes in src/copy-bytes.ts). */
export function nativeCopier(): (dst: Uint8Array, dstStart: number, src: Uint8Array, srcStart: number, n: number) => boolean {
  return load().copyBytes;
}

/** Size in bytes of a block device (BLKGETSIZE64). */
export function blockDeviceSize(fd: number): number {
  checkFd(fd);
  return load().blockDeviceSize(fd);
}

/** Logical sector size of a block device (BLKSSZGET). */
export function blockSectorSize(fd: number): number {
  checkFd(fd);
  return load().blockSectorSize(fd);
}

/** Reserves disk blocks for [offset, offset + length) of a regular file (extending it if needed). */
export function allocate(fd: number, offset: number, length: number): void {
  checkFd(fd);
  checkRange(offset, length);
  load().allocate(fd, offset, length);
}

/**
 * Gives byte ranges back to a device, in the thread pool: hole-punched in a regular file (its size
 * kept), discarded on a block device (BLKDISCARD). Every range is tried; rejects with the first failure.
 */
export function deallocate(fd: number, block: boolean, ranges: readonly { offset: number; length: number }[]): Promise<void> {
  checkFd(fd);
  const pairs = new Float64Array(ranges.length * 2);
  ranges.forEach(({ offset, length }, i) => {
    checkRange(offset, length);
    pairs[2 * i] = offset;
    pairs[2 * i + 1] = length;
  });
  return load().deallocate(fd, block, pairs);
}

/** Sends one state datagram to systemd's notify socket. */
export function sdNotify(socketPath: string, state: string): void {
  if (socketPath.length === 0) throw new TypeError('empty notify socket path');
  load().sdNotify(socketPath, state);
}

/** Gives the C heap's free memory back to the system (malloc_trim(0)); true if any was released. */
export function mallocTrim(): boolean {
  return load().mallocTrim();
}

/** CRC-32C (Castagnoli) of the bytes: the page checksum (hardware-assisted where the CPU has SSE4.2). */
export function crc32c(bytes: Uint8Array): number {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('crc32c takes a Uint8Array');
  return load().crc32c(bytes);
}

/**
 * Reads at `position` only what the page cache already holds (preadv2 with RWF_NOWAIT): answers
 * the bytes read, or -1 where the read would wait for the device. A cached read on the event loop
 * costs a syscall; through libuv's thread pool it costs ~11 µs of hand-offs here.
 */
export function readCached(fd: number, into: Uint8Array, position: number): number {
  checkFd(fd);
  checkPosition(position);
  return load().readCached(fd, into, position);
}

/** Buffers written back to back from a byte position. */
export interface WriteRun {
  position: number;
  buffers: readonly Uint8Array[];
}

/**
 * Writes the buffers back to back from `position` and sets sums[i] to the CRC-32C of buffers[i],
 * both in libuv's thread pool: the event loop neither sums nor copies the bytes. Writeback of each
 * chunk starts as soon as it is written (sync_file_range), so a flush after it waits for less. The
 * buffers must not change until the promise settles.
 */
export function writevSummed(fd: number, buffers: readonly Uint8Array[], position: number, sums: Uint32Array): Promise<void> {
  return writeRuns(fd, [{ position, buffers }], sums, { sumNow: false, sync: false, startWriteback: true });
}

/**
 * Writes each run, then fdatasyncs the file, as one job in libuv's thread pool (one hand-off
 * there and back for the lot). sums[i] is the CRC-32C of the i-th buffer of all the runs, set
 * before this returns (taken on the calling thread: for small writes whose checksums are wanted
 * at once). Rejects with the failing call's errno error (syscall 'pwritev' or 'fdatasync'); no
 * fdatasync is tried after a failed write. The buffers must not change until the promise settles.
 */
export function writeRunsAndSync(fd: number, runs: readonly WriteRun[], sums: Uint32Array): Promise<void> {
  return writeRuns(fd, runs, sums, { sumNow: true, sync: true, startWriteback: false });
}

/** Writes each run (pwritev, resumed after a short write), all as one job in libuv's thread pool. Rejects with the failing call's errno error. */
export function writeRunsInOneJob(fd: number, runs: readonly WriteRun[]): Promise<void> {
  return writeRuns(fd, runs, NO_SUMS, { sumNow: false, sync: false, startWriteback: false });
}

/** No sums asked for (writeRunsInOneJob): none are taken. */
const NO_SUMS = new Uint32Array(0);

function writeRuns(fd: number, runs: readonly WriteRun[], sums: Uint32Array, { sumNow, sync, startWriteback }: { sumNow: boolean; sync: boolean; startWriteback: boolean }): Promise<void> {
  checkFd(fd);
  const total = runs.reduce((n, r) => n + r.buffers.length, 0);
  if (sums.length < total && sums !== NO_SUMS) throw new RangeError(`${sums.length} sums for ${total} buffers`);
  const positions = new Float64Array(runs.length);
  const counts = new Uint32Array(runs.length);
  // Each buffer is passed as (which backing store, offset, length): pages of a page-out share one.
  const backings: ArrayBufferLike[] = [];
  const which = new Uint32Array(total);
  const offsets = new Float64Array(total);
  const lengths = new Uint32Array(total);
  let i = 0;
  runs.forEach(({ position, buffers }, r) => {
    checkPosition(position);
    positions[r] = position;
    counts[r] = buffers.length;
    for (const b of buffers) {
      if (!(b instanceof Uint8Array)) throw new TypeError('writeRuns takes Uint8Arrays');
      let k = backings.length > 0 && backings[backings.length - 1] === b.buffer ? backings.length - 1 : backings.indexOf(b.buffer);
      if (k < 0) k = backings.push(b.buffer) - 1;
      which[i] = k;
      offsets[i] = b.byteOffset;
      lengths[i] = b.byteLength;
      i++;
    }
  });
  return load().writeRuns(fd, positions, counts, backings.map((buffer) => new Uint8Array(buffer)), which, offsets, lengths, sums, sumNow, sync, startWriteback);
}

/** Memory to share with other processes: a memfd sealed against shrinking and growing, mapped read-write. */
export function sharedMemory(name: string, bytes: number): { fd: number; buffer: SharedArrayBuffer } {
  checkRange(0, bytes);
  return load().sharedMemory(name, bytes);
}

/**
 * Maps shared memory received from another process. Read-only unless `writable`; writing through
 * a read-only mapping kills the process, so only code that never writes may hold one.
 */
export function mapShared(fd: number, bytes: number, writable: boolean): SharedArrayBuffer {
  checkFd(fd);
  checkRange(0, bytes);
  return load().mapShared(fd, bytes, writable);
}

/** A new descriptor of what `fd` holds (through /proc/self/fd): read-only, its receiver can only map it read-only. */
export function reopenFd(fd: number, writable: boolean): number {
  checkFd(fd);
  return load().reopenFd(fd, writable);
}

/** Sends `bytes` with descriptors attached (SCM_RIGHTS) on a connected Unix socket. */
export function sendWithFds(socketFd: number, bytes: Uint8Array, fds: number[]): void {
  checkFd(socketFd);
  fds.forEach(checkFd);
  load().sendWithFds(socketFd, bytes, fds);
}

/**
 * In the thread pool: connects to a Unix socket, sends `bytes`, and reads `frames` length-prefixed
 * frames, with the descriptors passed along (Node's net module drops them). Rejects with ETIMEDOUT
 * if they do not come within `timeoutMs`.
 */
export function exchangeForFds(socketPath: string, bytes: Uint8Array, frames: number, timeoutMs: number): Promise<{ frames: Buffer[]; fds: number[] }> {
  return load().exchangeForFds(socketPath, bytes, frames, timeoutMs);
}

export function closeFd(fd: number): void {
  checkFd(fd);
  load().closeFd(fd);
}

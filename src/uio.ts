import { UIO_SYSSPACE, UIO_USERSPACE, UIO_XMEM } from './constants.js';
import { PagerError } from './errors.js';
import { copyBytes } from './copy-bytes.js';

/**
 * The caller's side of a data move (AIX struct uio): its buffers are the concatenation of `iov`;
 * `resid` bytes remain to move, starting `total - resid` bytes into that concatenation. A move
 * reduces resid and advances offset by the bytes it moved.
 */
export interface Uio {
  iov: Uint8Array[];
  offset: number;
  resid: number;
  segflg: number;
}

/** Total bytes of the iovecs, after checking the uio's shape. EFAULT malformed-uio or cross-memory. */
export function checkUio(uio: Uio): number {
  if (uio === null || typeof uio !== 'object' || !Array.isArray(uio.iov)) throw new PagerError('malformed-uio');
  let total = 0;
  for (const buf of uio.iov) {
    if (!(buf instanceof Uint8Array)) throw new PagerError('malformed-uio', 'an iovec is not a byte array');
    total += buf.length;
  }
  if (!Number.isSafeInteger(uio.offset) || uio.offset < 0) throw new PagerError('malformed-uio', 'uio.offset is not a non-negative integer');
  if (!Number.isSafeInteger(uio.resid) || uio.resid < 0 || uio.resid > total) {
    throw new PagerError('malformed-uio', 'uio.resid is not an integer between 0 and the iovecs\' total length');
  }
  if (uio.segflg === UIO_XMEM) throw new PagerError('cross-memory');
  if (uio.segflg !== UIO_USERSPACE && uio.segflg !== UIO_SYSSPACE) throw new PagerError('malformed-uio', 'unknown segflg');
  return total;
}

/** A position in a uio's iovecs that copies advance. */
export class IovCursor {
  private index = 0;
  private within = 0;

  constructor(
    private readonly iov: Uint8Array[],
    skip: number,
  ) {
    while (this.index < iov.length && skip >= iov[this.index].length) {
      skip -= iov[this.index].length;
      this.index++;
    }
    this.within = skip;
  }

  /** Copies `len` bytes from the iovecs into `dest` at `at`, advancing the cursor. */
  readInto(dest: Uint8Array, at: number, len: number): void {
    while (len > 0) {
      const buf = this.iov[this.index];
      const n = Math.min(len, buf.length - this.within);
      copyBytes(dest, at, buf, this.within, this.within + n);
      this.step(n);
      at += n;
      len -= n;
    }
  }

  /** Copies `len` bytes of `src` from `at` into the iovecs, advancing the cursor. */
  writeFrom(src: Uint8Array, at: number, len: number): void {
    while (len > 0) {
      const buf = this.iov[this.index];
      const n = Math.min(len, buf.length - this.within);
      copyBytes(buf, this.within, src, at, at + n);
      this.step(n);
      at += n;
      len -= n;
    }
  }

  /** Where the cursor is, for reset(): a copy that must be taken back. */
  mark(): number {
    return this.index * 2 ** 32 + this.within;
  }

  reset(mark: number): void {
    this.index = Math.floor(mark / 2 ** 32);
    this.within = mark % 2 ** 32;
  }

  private step(n: number): void {
    this.within += n;
    while (this.index < this.iov.length && this.within >= this.iov[this.index].length) {
      this.within -= this.iov[this.index].length;
      this.index++;
    }
  }
}

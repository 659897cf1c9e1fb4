/**
 * Framing: every message is a 4-byte big-endian length followed by that many bytes of payload.
 * Pure: no sockets. The decoder refuses a length above its maximum before buffering anything.
 */

import { allocBuffer } from './buffer-slab.js';

export const LENGTH_BYTES = 4;

export class FrameTooLargeError extends Error {
  constructor(readonly length: number, readonly max: number) {
    super(`frame of ${length} bytes exceeds the maximum of ${max}`);
    this.name = 'FrameTooLargeError';
  }
}

export function encodeFrame(payload: Uint8Array): Buffer {
  const frame = allocBuffer(LENGTH_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.set(payload, LENGTH_BYTES);
  return frame;
}

/**
 * Turns a byte stream into frames. push() answers the complete payloads so far.
 *
 * A frame that arrives in pieces is assembled in place: its buffer is taken once its length is
 * known and each piece is copied in as it comes (one copy, no list of chunks joined at the end).
 * A frame wholly inside one chunk is answered as a view of it, unless `reusedChunks` says the
 * caller's chunks are overwritten after push returns (a socket read into one buffer, `onread`):
 * then every frame is copied out.
 */
export class FrameDecoder {
  /** The length prefix, while it arrives in pieces. */
  private readonly head = Buffer.alloc(LENGTH_BYTES);
  private headBytes = 0;
  /** The frame being assembled, and how much of it has arrived. */
  private frame: Buffer | undefined;
  private filled = 0;

  constructor(
    private readonly maxPayload: number,
    private readonly options: {
      reusedChunks?: boolean;
      /** Where an assembled frame's buffer comes from (recycled buffers); allocBuffer if not given. */
      allocate?: (size: number) => Buffer;
    } = {},
  ) {}

  /** Bytes of an incomplete frame held (for partial-frame timeouts and memory bounds). */
  get pending(): number {
    return this.frame === undefined ? this.headBytes : LENGTH_BYTES + this.filled;
  }

  /**
   * Where the next read of the stream may land instead of the caller's own buffer: the rest of
   * the frame being assembled, when at least `minBytes` of it are still to come. The kernel then
   * copies straight into the frame; the caller reports the bytes with received().
   */
  readTarget(minBytes: number): Buffer | undefined {
    if (this.frame === undefined || this.frame.length - this.filled < minBytes) return undefined;
    return this.frame.subarray(this.filled);
  }

  /** `n` bytes were read into the last readTarget(): answers the frame if that completed it. */
  received(n: number): Buffer[] {
    const frame = this.frame;
    if (frame === undefined || n > frame.length - this.filled) throw new RangeError(`${n} bytes read past the frame being assembled`);
    this.filled += n;
    if (this.filled < frame.length) return [];
    this.frame = undefined;
    return [frame];
  }

  push(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.frame !== undefined) {
        const n = Math.min(chunk.length - at, this.frame.length - this.filled);
        chunk.copy(this.frame, this.filled, at, at + n);
        this.filled += n;
        at += n;
        if (this.filled === this.frame.length) {
          frames.push(this.frame);
          this.frame = undefined;
        }
        continue;
      }
      let length: number;
      if (this.headBytes === 0 && chunk.length - at >= LENGTH_BYTES) {
        length = chunk.readUInt32BE(at);
        at += LENGTH_BYTES;
      } else {
        const n = Math.min(chunk.length - at, LENGTH_BYTES - this.headBytes);
        chunk.copy(this.head, this.headBytes, at, at + n);
        this.headBytes += n;
        at += n;
        if (this.headBytes < LENGTH_BYTES) break;
        this.headBytes = 0;
        length = this.head.readUInt32BE(0);
      }
      if (length > this.maxPayload) throw new FrameTooLargeError(length, this.maxPayload);
      if (!this.options.reusedChunks && chunk.length - at >= length) {
        frames.push(chunk.subarray(at, at + length));
        at += length;
        continue;
      }
      this.frame = (this.options.allocate ?? allocBuffer)(length);
      this.filled = 0;
      if (length === 0) {
        frames.push(this.frame);
        this.frame = undefined;
      }
    }
    return frames;
  }
}

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
 * A frame wholly inside one chunk is answered as a view of it. One that arrives in pieces is kept
 * as views of them and joined once complete, so a peer is charged only for the bytes it sent.
 * With `reusedChunks` (a socket reading into one buffer of its own, `onread`: the chunk is
 * overwritten after push returns) every frame is copied out instead: assembled in place, in a
 * buffer taken once its length is known, which the next reads may also land in directly
 * (readTarget, received). Only a peer trusted with that much (the client's daemon) gets this mode.
 */
export class FrameDecoder {
  /** The length prefix, while it arrives in pieces. */
  private readonly head = Buffer.alloc(LENGTH_BYTES);
  private headBytes = 0;
  /** The payload length of the frame under way (-1: none), and how much of it has arrived. */
  private length = -1;
  private filled = 0;
  /** Its pieces so far (views of the chunks), or, with reusedChunks, the buffer it is assembled in. */
  private pieces: Buffer[] = [];
  private frame: Buffer | undefined;

  constructor(
    private readonly maxPayload: number,
    private readonly options: {
      reusedChunks?: boolean;
      /** Where a frame assembled in place gets its buffer (recycled buffers); allocBuffer if not given. */
      allocate?: (size: number) => Buffer;
    } = {},
  ) {}

  /** Bytes of an incomplete frame held (for partial-frame timeouts and memory bounds). */
  get pending(): number {
    return this.length < 0 ? this.headBytes : LENGTH_BYTES + this.filled;
  }

  /**
   * Where the next read of the stream may land instead of the caller's own buffer: the rest of
   * the frame being assembled in place, when at least `minBytes` of it are still to come. The
   * kernel then copies straight into the frame; the caller reports the bytes with received().
   */
  readTarget(minBytes: number): Buffer | undefined {
    if (this.frame === undefined || this.length - this.filled < minBytes) return undefined;
    return this.frame.subarray(this.filled);
  }

  /** `n` bytes were read into the last readTarget(): answers the frame if that completed it. */
  received(n: number): Buffer[] {
    if (this.frame === undefined || n > this.length - this.filled) throw new RangeError(`${n} bytes read past the frame being assembled`);
    this.filled += n;
    return this.filled === this.length ? [this.complete()] : [];
  }

  push(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.length < 0) {
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
        this.length = length;
        this.filled = 0;
        if (this.options.reusedChunks) this.frame = (this.options.allocate ?? allocBuffer)(length);
        if (length === 0) frames.push(this.complete());
        continue;
      }
      const n = Math.min(chunk.length - at, this.length - this.filled);
      if (this.frame !== undefined) chunk.copy(this.frame, this.filled, at, at + n);
      else this.pieces.push(chunk.subarray(at, at + n));
      this.filled += n;
      at += n;
      if (this.filled === this.length) frames.push(this.complete());
    }
    return frames;
  }

  /** The frame under way, now complete. */
  private complete(): Buffer {
    const frame = this.frame ?? (this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces, this.length));
    this.frame = undefined;
    this.pieces = [];
    this.length = -1;
    return frame;
  }
}

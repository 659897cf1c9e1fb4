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
 * Turns a byte stream into frames. push() answers the complete payloads so far, as views of the
 * chunks read: frames that lie inside one chunk (most, with many requests in flight) cost one view
 * each; only a frame split across chunks is copied together, once it is complete.
 */
export class FrameDecoder {
  /** The incomplete frame's pieces, in order. */
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxPayload: number) {}

  /** Bytes of an incomplete frame held (for partial-frame timeouts and memory bounds). */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Buffer[] {
    if (this.chunks.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered < LENGTH_BYTES) return [];
      if (this.chunks[0].length < LENGTH_BYTES) this.chunks = [Buffer.concat(this.chunks)];
      const length = this.lengthAt(this.chunks[0], 0);
      if (this.buffered < LENGTH_BYTES + length) return [];
      chunk = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [];
      this.buffered = 0;
    }
    const frames: Buffer[] = [];
    let at = 0;
    while (chunk.length - at >= LENGTH_BYTES) {
      const length = this.lengthAt(chunk, at);
      if (chunk.length - at - LENGTH_BYTES < length) break;
      frames.push(chunk.subarray(at + LENGTH_BYTES, at + LENGTH_BYTES + length));
      at += LENGTH_BYTES + length;
    }
    if (at < chunk.length) {
      this.chunks.push(at === 0 ? chunk : chunk.subarray(at));
      this.buffered = chunk.length - at;
    }
    return frames;
  }

  private lengthAt(buf: Buffer, at: number): number {
    const length = buf.readUInt32BE(at);
    if (length > this.maxPayload) throw new FrameTooLargeError(length, this.maxPayload);
    return length;
  }
}

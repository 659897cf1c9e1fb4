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

/** Turns a byte stream into frames. push() answers the complete payloads so far. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxPayload: number) {}

  /** Bytes of an incomplete frame held (for partial-frame timeouts and memory bounds). */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Buffer[] = [];
    for (;;) {
      if (this.buffered < LENGTH_BYTES) break;
      const head = this.peek(LENGTH_BYTES);
      const length = head.readUInt32BE(0);
      if (length > this.maxPayload) throw new FrameTooLargeError(length, this.maxPayload);
      if (this.buffered < LENGTH_BYTES + length) break;
      const all = this.take(LENGTH_BYTES + length);
      frames.push(all.subarray(LENGTH_BYTES));
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length >= n) return this.chunks[0];
    this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

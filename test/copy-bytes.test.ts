import { describe, expect, it } from 'vitest';
import { copyBytes } from '../src/copy-bytes.js';

describe('copyBytes', () => {
  it('copies a range into and out of shared memory, overlapping ranges as memmove does', () => {
    const shared = new Uint8Array(new SharedArrayBuffer(16));
    copyBytes(shared, 4, Uint8Array.of(1, 2, 3, 4, 5), 1, 4);
    expect([...shared.subarray(0, 8)]).toEqual([0, 0, 0, 0, 2, 3, 4, 0]);
    const out = new Uint8Array(3);
    copyBytes(out, 0, shared, 4, 7);
    expect([...out]).toEqual([2, 3, 4]);
    copyBytes(shared, 5, shared, 4, 7);
    expect([...shared.subarray(4, 8)]).toEqual([2, 2, 3, 4]);
  });

  it('copies ranges of any alignment and size into and out of shared memory exactly, nothing past their edges', () => {
    const pattern = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
    for (const n of [255, 256, 4096, 64 * 1024, 64 * 1024 + 3, 200_000]) {
      for (const [srcAt, dstAt] of [[0, 28], [5, 0], [3, 17], [8, 16]]) {
        const plain = Buffer.alloc(n + 64, 0xee);
        const shared = new Uint8Array(new SharedArrayBuffer(n + 64));
        const bytes = pattern(n, srcAt + dstAt);
        plain.set(bytes, srcAt);
        shared.fill(0xee);
        copyBytes(shared, dstAt + 1, plain, srcAt, srcAt + n); // into shared memory
        expect(Buffer.from(shared.subarray(dstAt + 1, dstAt + 1 + n)).equals(bytes)).toBe(true);
        expect([shared[dstAt], shared[dstAt + 1 + n]]).toEqual([0xee, 0xee]); // nothing outside the range
        copyBytes(shared, dstAt, shared, dstAt + 1, dstAt + 1 + n); // overlapping, within shared memory: a memmove
        const out = Buffer.alloc(n + 64, 0xee);
        copyBytes(out.subarray(1), dstAt, shared, dstAt, dstAt + n); // out of it, into a view at an odd offset
        expect(out.subarray(1 + dstAt, 1 + dstAt + n).equals(bytes)).toBe(true);
        expect(out[1 + dstAt + n]).toBe(0xee);
        expect(out[dstAt]).toBe(0xee);
      }
    }
  });

  it('throws RangeError for a range that does not fit, as set() does, copying nothing', () => {
    const dst = new Uint8Array(4);
    expect(() => copyBytes(dst, 2, new Uint8Array(3).fill(9))).toThrow(RangeError);
    expect(() => copyBytes(dst, 0, new Uint8Array(3), 2, 5)).toThrow(RangeError);
    expect(() => copyBytes(dst, -1, new Uint8Array(1))).toThrow(RangeError);
    expect(() => copyBytes(dst, Number.NaN, new Uint8Array(1))).toThrow(RangeError);
    expect([...dst]).toEqual([0, 0, 0, 0]);
  });
});

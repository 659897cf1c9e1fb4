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

  it('throws RangeError for a range that does not fit, as set() does, copying nothing', () => {
    const dst = new Uint8Array(4);
    expect(() => copyBytes(dst, 2, new Uint8Array(3).fill(9))).toThrow(RangeError);
    expect(() => copyBytes(dst, 0, new Uint8Array(3), 2, 5)).toThrow(RangeError);
    expect(() => copyBytes(dst, -1, new Uint8Array(1))).toThrow(RangeError);
    expect(() => copyBytes(dst, Number.NaN, new Uint8Array(1))).toThrow(RangeError);
    expect([...dst]).toEqual([0, 0, 0, 0]);
  });
});

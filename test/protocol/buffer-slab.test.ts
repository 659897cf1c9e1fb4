import { describe, expect, it } from 'vitest';
import { allocBuffer } from '../../src/protocol/buffer-slab.js';

describe('allocBuffer', () => {
  it('answers the size asked, 8-byte aligned, buffers carved one after another never overlapping', () => {
    const taken: Buffer[] = [];
    for (let round = 0; round < 40; round++) {
      for (const size of [1, 28 + 4096, 16 + 4096, 1000, 64 * 1024, 64 * 1024 + 1, 300_000]) {
        const b = allocBuffer(size);
        expect(b.length).toBe(size);
        expect(b.byteOffset % 8).toBe(0);
        b.fill(taken.length & 255);
        taken.push(b);
      }
    }
    taken.forEach((b, i) => expect(b.every((x) => x === (i & 255))).toBe(true));
  });
});

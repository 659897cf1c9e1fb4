import { describe, expect, it } from 'vitest';
import { RecycledBuffers } from '../../src/protocol/recycled-buffers.js';

describe('recycled buffers', () => {
  it('hands a buffer given back to the next taker of its size, up to the cap, and never a view of a shared slab', () => {
    const pool = new RecycledBuffers(512 * 1024);
    const a = pool.take(256 * 1024);
    const b = pool.take(256 * 1024);
    const c = pool.take(256 * 1024);
    pool.give(a);
    pool.give(b);
    pool.give(c); // past the cap: dropped
    const again = [pool.take(256 * 1024), pool.take(256 * 1024)];
    expect(again.includes(a) && again.includes(b)).toBe(true);
    expect(pool.take(256 * 1024)).not.toBe(c);
    expect(pool.take(128 * 1024)).not.toBe(a); // another size: a fresh one

    const small = pool.take(4096); // carved from a shared slab
    pool.give(small);
    expect(pool.take(4096)).not.toBe(small);
  });
});

import { describe, expect, it } from 'vitest';
import { FrameReferenceWrite } from '../../src/client/frame-reference-write.js';

const frames = new Uint8Array(new SharedArrayBuffer(8 * 16)).map((_, i) => i);
const run = (first: number, count: number): Uint8Array => frames.subarray(first * 16, (first + count) * 16);

describe('a strategy write by frame reference', () => {
  it('hands one run of frames as `data` itself, copying nothing', () => {
    let allocated = 0;
    const io = new FrameReferenceWrite(3, 10, 2, [run(4, 2)], (size) => ((allocated += size), Buffer.alloc(size)));
    expect(io.data).toBe(io.pages[0]);
    expect(io.copy).toBeUndefined();
    expect(allocated).toBe(0);
  });

  it('joins several runs into one buffer on the first use of `data`, once, in page order', () => {
    const made: Buffer[] = [];
    const io = new FrameReferenceWrite(3, 10, 3, [run(5, 1), run(1, 2)], (size) => {
      made.push(Buffer.alloc(size));
      return made[made.length - 1];
    });
    expect(made).toHaveLength(0); // a strategy reading `pages` pays for no copy
    expect([...io.data]).toEqual([...run(5, 1), ...run(1, 2)]);
    expect(io.data).toBe(io.copy);
    expect(made).toHaveLength(1);
  });
});

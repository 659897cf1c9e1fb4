import { describe, expect, it } from 'vitest';
import { frameReferenceWrite } from '../../src/client/frame-reference-write.js';

const frames = new Uint8Array(new SharedArrayBuffer(8 * 16)).map((_, i) => i);
const run = (first: number, count: number): Uint8Array => frames.subarray(first * 16, (first + count) * 16);

describe('a strategy write by frame reference', () => {
  it('hands one run of frames as `data` itself, copying nothing', () => {
    let allocated = 0;
    const { request, joined } = frameReferenceWrite(3, 10, 2, [run(4, 2)], (size) => ((allocated += size), Buffer.alloc(size)));
    expect(request.data).toBe(request.pages![0]);
    expect(joined()).toBeUndefined();
    expect(allocated).toBe(0);
  });

  it('joins several runs into one buffer on the first use of `data`, once, in page order', () => {
    const made: Buffer[] = [];
    const { request, joined } = frameReferenceWrite(3, 10, 3, [run(5, 1), run(1, 2)], (size) => {
      made.push(Buffer.alloc(size));
      return made[made.length - 1];
    });
    expect(made).toHaveLength(0); // a strategy reading `pages` pays for no copy
    expect([...request.data]).toEqual([...run(5, 1), ...run(1, 2)]);
    expect(request.data).toBe(joined());
    expect(made).toHaveLength(1);
  });

  it('carries its bytes into a copy of the request made with spread syntax', () => {
    const { request } = frameReferenceWrite(3, 10, 3, [run(5, 1), run(1, 2)], (size) => Buffer.alloc(size));
    const copy = { ...request };
    expect([...copy.data]).toEqual([...run(5, 1), ...run(1, 2)]);
    expect(copy).toMatchObject({ op: 'write', vmid: 3, page: 10, npages: 3 });
  });
});

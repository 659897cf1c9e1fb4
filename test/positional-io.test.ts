import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writevFully } from '../src/positional-io.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('writevFully', () => {
  it('writes the first `length` bytes of the pieces, in order, at the position, and nothing past them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagerd-writev-'));
    dirs.push(dir);
    const path = join(dir, 'f');
    writeFileSync(path, Buffer.alloc(32, 0xee));
    const file = await open(path, 'r+');
    try {
      const pieces = [Buffer.alloc(4, 1), Buffer.alloc(8, 2), Buffer.alloc(4, 3)];
      await writevFully(file, pieces, 10, 14); // the last piece only in part
      await writevFully(file, pieces, 0, 0); // nothing
    } finally {
      await file.close();
    }
    const expected = Buffer.concat([Buffer.alloc(10, 0xee), Buffer.alloc(4, 1), Buffer.alloc(8, 2), Buffer.alloc(2, 3), Buffer.alloc(8, 0xee)]);
    expect(readFileSync(path).equals(expected)).toBe(true);
  });

  it('refuses a length the pieces do not hold (RangeError) before writing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagerd-writev-'));
    dirs.push(dir);
    const file = await open(join(dir, 'f'), 'w+');
    try {
      await expect(writevFully(file, [Buffer.alloc(4), Buffer.alloc(4)], 0, 9)).rejects.toThrow(RangeError);
      expect((await file.stat()).size).toBe(0);
    } finally {
      await file.close();
    }
  });
});

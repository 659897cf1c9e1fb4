import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncedWrites } from '../src/client/synced-writes.js';
import { leadingBytes } from '../src/positional-io.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function fileOf(bytes: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), 'pagerd-synced-'));
  dirs.push(dir);
  const path = join(dir, 'f');
  writeFileSync(path, bytes);
  return path;
}

describe('SyncedWrites', () => {
  it("writes each run at its position, the writes of one turn under one fdatasync, a later turn's under the next", async () => {
    const path = fileOf(Buffer.alloc(32, 0xee));
    const file = await open(path, 'r+');
    try {
      const writes = new SyncedWrites(file.fd);
      await Promise.all([writes.write(0, [Buffer.alloc(2, 1), Buffer.alloc(2, 2)]), writes.write(10, [Buffer.alloc(4, 3)]), writes.write(28, [Buffer.alloc(4, 4)])]);
      expect(writes.syncs).toBe(1);
      await writes.write(4, [Buffer.alloc(1, 5)]);
      expect(writes.syncs).toBe(2);
    } finally {
      await file.close();
    }
    const expected = Buffer.alloc(32, 0xee);
    expected.fill(1, 0, 2).fill(2, 2, 4).fill(5, 4, 5).fill(3, 10, 14).fill(4, 28, 32);
    expect(readFileSync(path).equals(expected)).toBe(true);
  });

  it('fails every write of a group whose write fails, with its errno, and flushes nothing', async () => {
    const path = fileOf(Buffer.alloc(8));
    const file = await open(path, 'r'); // pwritev answers EBADF
    try {
      const writes = new SyncedWrites(file.fd);
      const results = await Promise.allSettled([writes.write(0, [Buffer.alloc(4, 1)]), writes.write(4, [Buffer.alloc(4, 2)])]);
      expect(results.map((r) => r.status === 'rejected' && (r.reason as NodeJS.ErrnoException).code)).toEqual(['EBADF', 'EBADF']);
      expect(writes.syncs).toBe(0);
    } finally {
      await file.close();
    }
    expect(readFileSync(path).equals(Buffer.alloc(8))).toBe(true);
  });
});

describe('SyncedWrites and a failing fdatasync', () => {
  it('fails the writes of a group begun while an fdatasync that fails ran, though the next fdatasync succeeds', async () => {
    // Linux reports a writeback error to one fdatasync only: the next succeeds, the bytes lost.
    const path = fileOf(Buffer.alloc(8));
    const file = await open(path, 'r+');
    try {
      let calls = 0;
      let fail!: () => void;
      const sync = (): Promise<void> => (++calls > 1 ? Promise.resolve() : new Promise((_, reject) => (fail = () => reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })))));
      const writes = new SyncedWrites(file.fd, sync);
      const first = writes.write(0, [Buffer.alloc(4, 1)]);
      while (calls === 0) await new Promise((r) => setImmediate(r)); // its fdatasync runs
      const second = writes.write(4, [Buffer.alloc(4, 2)]);
      await new Promise((r) => setImmediate(r)); // its group has begun
      fail();
      const results = await Promise.allSettled([first, second]);
      expect(results.map((r) => r.status === 'rejected' && (r.reason as NodeJS.ErrnoException).code)).toEqual(['EIO', 'EIO']);
      expect(calls).toBe(2); // the second group's own fdatasync succeeded
    } finally {
      await file.close();
    }
  });
});

describe('SyncedWrites.idle', () => {
  it('resolves only once every write asked for has returned, so the file may then be closed', async () => {
    const MiB = 1 << 20;
    const path = fileOf(Buffer.alloc(8 * MiB));
    const file = await open(path, 'r+');
    const writes = new SyncedWrites(file.fd);
    const settled: number[] = [];
    const all = Array.from({ length: 8 }, (_, i) => writes.write(i * MiB, [Buffer.alloc(MiB, i + 1)]).finally(() => settled.push(i)));
    await writes.idle();
    expect(settled.length).toBe(8);
    await file.close();
    await Promise.all(all);
    const bytes = readFileSync(path);
    for (let i = 0; i < 8; i++) expect(bytes.subarray(i * MiB, (i + 1) * MiB).equals(Buffer.alloc(MiB, i + 1))).toBe(true);
  });
});

describe('leadingBytes', () => {
  it('answers the first `length` bytes of the pieces as views, the last piece cut where it must be', () => {
    const pieces = [Buffer.alloc(4, 1), Buffer.alloc(8, 2), Buffer.alloc(4, 3)];
    const out = leadingBytes(pieces, 14);
    expect(out.map((p) => p.length)).toEqual([4, 8, 2]);
    expect(out[0]).toBe(pieces[0]);
    expect(out[2].buffer).toBe(pieces[2].buffer);
    expect(leadingBytes(pieces, 0)).toEqual([]);
  });

  it('refuses a length the pieces do not hold (RangeError)', () => {
    expect(() => leadingBytes([Buffer.alloc(4), Buffer.alloc(4)], 9)).toThrow(RangeError);
  });
});

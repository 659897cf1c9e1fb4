import { closeSync, fstatSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blockDeviceSize, crc32c, deallocate, readCached, writeRunsAndSync, writevSummed } from '../../src/native/addon.js';
import { mulberry32 } from '../support/random.js';

/** CRC-32C bit by bit: the definition, to check the addon against. */
function referenceCrc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function scratchFile(): { file: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'pagerd-addon-'));
  return { file: join(dir, 'f'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

describe('native addon', () => {
  it('punches holes in a file: the ranges read zeros, the rest and the size stay', async () => {
    const { file, remove } = scratchFile();
    const fd = openSync(file, 'w+');
    try {
      writeSync(fd, Buffer.alloc(4 * 4096, 0xab), 0, 4 * 4096, 0);
      await deallocate(fd, false, [
        { offset: 4096, length: 4096 },
        { offset: 3 * 4096, length: 4096 },
      ]);
      const back = Buffer.alloc(4 * 4096);
      readSync(fd, back, 0, back.length, 0);
      const page = (i: number): Buffer => back.subarray(i * 4096, (i + 1) * 4096);
      expect([0, 1, 2, 3].map((i) => page(i).every((b) => b === 0))).toEqual([false, true, false, true]);
      expect(page(0).every((b) => b === 0xab) && page(2).every((b) => b === 0xab)).toBe(true);
      expect(fstatSync(fd).size).toBe(4 * 4096);
      await expect(deallocate(fd, true, [{ offset: 0, length: 4096 }])).rejects.toMatchObject({ code: 'ENOTTY', syscall: 'ioctl BLKDISCARD' });
    } finally {
      closeSync(fd);
      remove();
    }
  });

  it('fails like a Node system error on a regular file asked for its block device size', () => {
    const { file, remove } = scratchFile();
    const fd = openSync(file, 'w+');
    try {
      expect(() => blockDeviceSize(fd)).toThrow(expect.objectContaining({ code: 'ENOTTY', errno: -25, syscall: 'ioctl BLKGETSIZE64' }));
    } finally {
      closeSync(fd);
      remove();
    }
  });

  it('computes CRC-32C: the standard check values, and the definition for any length (one, three-stream short and long blocks), offset and shared memory', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
    expect(crc32c(new Uint8Array(0))).toBe(0);
    const random = mulberry32(7);
    const shared = new Uint8Array(new SharedArrayBuffer(65536));
    for (let i = 0; i < shared.length; i++) shared[i] = Math.floor(random() * 256);
    for (const [offset, length] of [[0, 4096], [1, 4095], [3, 17], [4093, 7], [0, 8192], [5, 0], [0, 65536], [3, 30001]]) {
      const view = shared.subarray(offset, offset + length);
      expect(crc32c(view)).toBe(referenceCrc32c(view));
    }
  });

  it('reads what the page cache holds without the thread pool, and nothing past the end', () => {
    const { file, remove } = scratchFile();
    const fd = openSync(file, 'w+');
    try {
      writeSync(fd, Buffer.alloc(2 * 4096, 0x5a), 0, 2 * 4096, 0); // just written: in the page cache
      const into = new Uint8Array(new SharedArrayBuffer(4096));
      expect(readCached(fd, into, 4096)).toBe(4096);
      expect(into.every((b) => b === 0x5a)).toBe(true);
      expect(readCached(fd, into, 8192)).toBe(0);
      expect(() => readCached(fd, into, -1)).toThrow(RangeError);
    } finally {
      closeSync(fd);
      remove();
    }
  });

  it('writes buffers from several backing stores back to back in the thread pool, with each one\'s CRC-32C', async () => {
    const { file, remove } = scratchFile();
    const fd = openSync(file, 'w+');
    try {
      const random = mulberry32(7);
      const pool = new Uint8Array(new SharedArrayBuffer(64 * 4096)).map(() => random() * 256);
      // 40 pages (more than one 128 KiB chunk of summing), one of them from its own buffer, one short.
      const buffers = Array.from({ length: 40 }, (_, i) => pool.subarray((i * 7 % 64) * 4096, (i * 7 % 64 + 1) * 4096));
      buffers[5] = new Uint8Array(4096).fill(0x5a);
      buffers[39] = buffers[39].subarray(0, 100);
      const sums = new Uint32Array(buffers.length);
      await writevSummed(fd, buffers, 4096, sums);
      const back = Buffer.alloc(39 * 4096 + 100);
      expect(readSync(fd, back, 0, back.length, 4096)).toBe(back.length);
      expect(back).toEqual(Buffer.concat(buffers));
      expect([...sums]).toEqual(buffers.map((b) => referenceCrc32c(b)));
      await expect(writevSummed(9999, buffers, 0, sums)).rejects.toMatchObject({ code: 'EBADF', syscall: 'pwritev' });
    } finally {
      closeSync(fd);
      remove();
    }
  });

  it('writes runs at their positions and then fdatasyncs, in one job; the sums are there as soon as it returns', async () => {
    const { file, remove } = scratchFile();
    const fd = openSync(file, 'w+');
    try {
      const pool = new Uint8Array(new SharedArrayBuffer(8 * 4096)).map((_, i) => (i * 13) & 0xff);
      const runs = [
        { position: 8 * 4096, buffers: [pool.subarray(0, 4096), pool.subarray(4096, 8192)] },
        { position: 512, buffers: [new Uint8Array(512).fill(0x77)] },
      ];
      const sums = new Uint32Array(3);
      const written = writeRunsAndSync(fd, runs, sums);
      expect([...sums]).toEqual(runs.flatMap((r) => r.buffers).map((b) => referenceCrc32c(b)));
      await written;
      const back = Buffer.alloc(2 * 4096);
      expect(readSync(fd, back, 0, back.length, 8 * 4096)).toBe(back.length);
      expect(back).toEqual(Buffer.from(pool.subarray(0, 8192)));
      const record = Buffer.alloc(512);
      readSync(fd, record, 0, 512, 512);
      expect(record.every((b) => b === 0x77)).toBe(true);
      await expect(writeRunsAndSync(9999, runs, sums)).rejects.toMatchObject({ code: 'EBADF', syscall: 'pwritev' });
    } finally {
      closeSync(fd);
      remove();
    }
  });

  it('checks its arguments in TypeScript', () => {
    expect(() => deallocate(-1, false, [{ offset: 0, length: 1 }])).toThrow(TypeError);
    expect(() => deallocate(0, false, [{ offset: 0, length: 0 }])).toThrow(RangeError);
  });
});

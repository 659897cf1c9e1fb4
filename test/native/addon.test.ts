import { closeSync, fstatSync, mkdtempSync, openSync, readSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blockDeviceSize, punchHole } from '../../src/native/addon.js';

describe('native addon', () => {
  it('punches a hole in a file: the range reads zeros, the size stays', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pagerd-addon-')), 'f');
    const fd = openSync(file, 'w+');
    try {
      writeSync(fd, Buffer.alloc(3 * 4096, 0xab), 0, 3 * 4096, 0);
      punchHole(fd, 4096, 4096);
      const back = Buffer.alloc(3 * 4096);
      readSync(fd, back, 0, back.length, 0);
      expect(back.subarray(4096, 8192).every((b) => b === 0)).toBe(true);
      expect(back.subarray(0, 4096).every((b) => b === 0xab)).toBe(true);
      expect(fstatSync(fd).size).toBe(3 * 4096);
    } finally {
      closeSync(fd);
    }
  });

  it('fails like a Node system error on a regular file asked for its block device size', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pagerd-addon-')), 'f');
    const fd = openSync(file, 'w+');
    try {
      expect(() => blockDeviceSize(fd)).toThrow(expect.objectContaining({ code: 'ENOTTY', errno: -25, syscall: 'ioctl BLKGETSIZE64' }));
    } finally {
      closeSync(fd);
    }
  });

  it('checks its arguments in TypeScript', () => {
    expect(() => punchHole(-1, 0, 1)).toThrow(TypeError);
    expect(() => punchHole(0, 0, 0)).toThrow(RangeError);
  });
});

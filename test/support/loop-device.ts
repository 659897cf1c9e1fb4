import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { storeDir } from './store-files.js';

export const isRoot = process.getuid?.() === 0;

/**
 * Attaches a loop device over a new (sparse) file of `bytes`, in `dir` or a new directory; answers
 * its path and a detach function.
 */
export function attachLoopDevice(bytes: number, dir = storeDir('pagerd-loop-')): { path: string; detach: () => void } {
  const file = join(dir, 'image');
  const fd = openSync(file, 'w');
  ftruncateSync(fd, bytes);
  closeSync(fd);
  const path = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  return { path, detach: () => execFileSync('losetup', ['-d', path]) };
}

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** pagerd's version, from its package.json (the nearest one above this file: dist/src or src). */
function readVersion(): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pagerd' && typeof pkg.version === 'string') return pkg.version;
    }
    if (dirname(dir) === dir) return 'unknown';
  }
}

export const VERSION = readVersion();

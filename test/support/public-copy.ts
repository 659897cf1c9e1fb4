import { chmodSync, cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { storeDir } from './store-files.js';

const ROOT = join(import.meta.dirname, '../..');
let copied: string | undefined;

/**
 * A copy of dist/, the native addon and the packages `packages` need at run time (with the addon's loader), in a directory every uid can
 * read: programs run as another uid (setpriv) cannot read a checkout that lives under a 0700
 * directory (a home directory, mktemp -d). Answers the copy's root (made once per test file).
 */
export function publicCopy(packages: readonly string[]): string {
  if (copied !== undefined) return copied;
  const dir = storeDir('pagerd-public-'); // removed when the test file ends
  chmodSync(dir, 0o755);
  cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json')); // "type": "module"
  cpSync(join(ROOT, 'native'), join(dir, 'native'), { recursive: true }); // the addon: shared frames need it in clients too
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    const from = join(ROOT, 'node_modules', name);
    if (!existsSync(from)) return; // an optional dependency not installed
    cpSync(from, join(dir, 'node_modules', name), { recursive: true });
    const manifest = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(manifest.dependencies ?? {})) visit(dep);
  };
  for (const name of ['node-gyp-build', ...packages]) visit(name);
  copied = dir;
  return dir;
}

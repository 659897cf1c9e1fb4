import { execFileSync } from 'node:child_process';

/**
 * Integration tests start the real daemon and real client processes from dist/: compile once
 * before any test runs, so they never run a stale build.
 */
export default function setup(): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
}

import type { ChildProcess } from 'node:child_process';

/** Processes a test file started (daemons, map-files): killed when it ends, so a failed test leaves none behind. */
const started = new Set<ChildProcess>();

export function track(proc: ChildProcess): void {
  started.add(proc);
  proc.once('exit', () => started.delete(proc));
}

/** SIGKILLs those still running (test/support/cleanup.ts, after the file's own hooks). */
export function killTracked(): void {
  for (const proc of started) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  started.clear();
}

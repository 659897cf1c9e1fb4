import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * The event-loop delay p99 (µs) of a Node process that does nothing for `ms`: how late this
 * machine fires a 1 ms timer in a process with no work of its own (its scheduler's floor), measured
 * as the daemon's gauge measures it (the histogram's samples less the 1 ms interval).
 */
export async function idleLoopDelayP99(ms = 1000): Promise<number> {
  const script = `const h = require('node:perf_hooks').monitorEventLoopDelay({ resolution: 1 }); h.enable();
setTimeout(() => process.stdout.write(String(Math.max(0, h.percentile(99) / 1e3 - 1000))), ${ms});`;
  const { stdout } = await run(process.execPath, ['-e', script]);
  return Number(stdout);
}

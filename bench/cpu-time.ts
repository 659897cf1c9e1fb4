import { readdirSync, readFileSync } from 'node:fs';

/**
 * The CPU time every thread of process `pid` has used, in seconds: the first field of each
 * thread's /proc schedstat, in nanoseconds (/proc/PID/stat counts only in 10 ms steps).
 */
function processCpuSeconds(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended since the listing: its time is gone with it
    }
  }
  return ns / 1e9;
}

/** This process's CPU time (every thread, its thread pool included), in seconds. */
function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/**
 * Runs `work` and answers what it returned, with the CPU time this process and the processes
 * `pids` used meanwhile, in seconds. The rate a machine can reach is at most its cores divided by
 * the CPU time one operation costs, however the processes overlap.
 */
export async function withCpuTime<T>(pids: number[], work: () => Promise<T>): Promise<{ result: T; cpuSeconds: number }> {
  const total = (): number => ownCpuSeconds() + pids.reduce((sum, pid) => sum + processCpuSeconds(pid), 0);
  const before = total();
  const result = await work();
  return { result, cpuSeconds: total() - before };
}

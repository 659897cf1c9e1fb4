import { readdirSync, readFileSync } from 'node:fs';

/** Each thread of process `pid` (by id) with the CPU time it has used, in ns: /proc schedstat's first field (/proc/PID/stat counts in 10 ms steps). */
function threadTimes(pid: number): Map<string, number> {
  const times = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      times.set(tid, Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
    } catch {
      // a thread that ended since the listing
    }
  }
  return times;
}

/** CPU seconds the threads of `after` used since `before` (a thread born since counts whole; one that ended meanwhile is left out). */
function usedSince(before: Map<string, number>, after: Map<string, number>): number {
  let ns = 0;
  for (const [tid, t] of after) ns += t - (before.get(tid) ?? 0);
  return ns / 1e9;
}

/**
 * Runs `work` and answers what it returned, with the CPU time this process and the processes
 * `pids` used meanwhile, in seconds. The rate a machine can reach is at most its cores divided by
 * the CPU time one operation costs, however the processes overlap.
 */
export async function withCpuTime<T>(pids: number[], work: () => Promise<T>): Promise<{ result: T; cpuSeconds: number }> {
  const all = [process.pid, ...pids];
  const before = all.map(threadTimes);
  const result = await work();
  const cpuSeconds = all.reduce((sum, pid, i) => sum + usedSince(before[i], threadTimes(pid)), 0);
  return { result, cpuSeconds };
}

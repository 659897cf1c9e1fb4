import { readFileSync } from 'node:fs';

/** A process's resident set size in bytes (VmRSS from /proc). */
export function rssBytes(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

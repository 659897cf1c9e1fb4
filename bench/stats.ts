/** Summary statistics for benchmark samples. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number;
}

export function summarize(samples: number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  return { median: s[Math.floor((s.length - 1) / 2)], min: s[0], max: s[s.length - 1], runs: s.length };
}

export function percentile(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/**
 * Unmeasured runs before the measured ones: at least one, and at least this long in all. A fresh
 * daemon runs its first 1,000-page page-outs 2–3× slower than later ones (scan, writes and commit
 * alike, while V8 compiles on the same 2 cores); one short warm-up run was not enough.
 */
const WARM_UP_MS = 500;

/** Runs `sample` `runs` times (after warming up for at least `warmUpMs`) and summarizes the values it answers. */
export async function repeat(runs: number, sample: () => Promise<number>, warmUpMs = WARM_UP_MS): Promise<Summary> {
  const [summary] = await interleaved(runs, [sample], warmUpMs);
  return summary;
}

/**
 * Runs the `samples` in turn, `runs` rounds of one each (after warming up for at least
 * `warmUpMs`), and summarizes each one's values. On a shared machine whose speed drifts from one
 * minute to the next, what runs side by side meets the same drift, where runs of one after runs
 * of the other compare two moments. Every other round runs them in reverse order, so none always
 * follows the same other.
 */
export async function interleaved(runs: number, samples: readonly (() => Promise<number>)[], warmUpMs = WARM_UP_MS): Promise<Summary[]> {
  const warm = performance.now() + warmUpMs;
  do for (const sample of samples) await sample();
  while (performance.now() < warm);
  const values: number[][] = samples.map(() => []);
  for (let round = 0; round < runs; round++) {
    const order = samples.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) values[i].push(await samples[i]());
  }
  return values.map(summarize);
}

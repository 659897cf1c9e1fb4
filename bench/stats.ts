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

/** Runs `sample` `runs` times (after one warm-up) and summarizes the values it answers. */
export async function repeat(runs: number, sample: () => Promise<number>): Promise<Summary> {
  await sample();
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(await sample());
  return summarize(values);
}

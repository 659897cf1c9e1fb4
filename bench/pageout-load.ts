import { fork } from 'node:child_process';
import { join } from 'node:path';

/** Starts `processes` page-out workers (pageout-worker.ts) on the daemon at `socket`; stop() ends them and answers their cycles. */
export async function startPageoutWorkers(socket: string, processes: number): Promise<{ stop(): Promise<number> }> {
  const workers = Array.from({ length: processes }, () => fork(join(import.meta.dirname, 'pageout-worker.js'), [socket], { stdio: 'ignore' }));
  await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
  return {
    async stop(): Promise<number> {
      const done = workers.map((w) => new Promise<number>((resolve) => w.once('message', (m: { cycles: number }) => resolve(m.cycles))));
      for (const w of workers) w.send('stop');
      return (await Promise.all(done)).reduce((a, b) => a + b, 0);
    },
  };
}

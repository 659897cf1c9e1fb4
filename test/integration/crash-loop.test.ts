import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkHistories } from '../support/crash-history.js';
import { startDaemon } from '../support/daemon.js';
import { attachLoopDevice, isRoot } from '../support/loop-device.js';
import { storeDir } from '../support/store-files.js';

const WORKER = join(import.meta.dirname, '../../dist/test/support/crash-worker.js');
const WORKERS = 4;
const PAGES = 16;

function spawnWorker(socket: string, history: string, worker: number, cycle: number): ChildProcess {
  return spawn(process.execPath, [WORKER, socket, history, String(worker), String(cycle)], { stdio: 'ignore' });
}

/**
 * The crash loop: the real daemon under load from WORKERS client processes is killed with SIGKILL
 * at a random moment, restarted, and every page is checked against the clients' acknowledged
 * history; the restart's integrity check and a full scrub must pass every time.
 */
async function crashLoop(cycles: number, device?: string): Promise<{ checked: number; acked: number; violations: string[] }> {
  const stateDir = storeDir('pagerd-crash-');
  const histories = Array.from({ length: WORKERS }, (_, i) => join(stateDir, `history-${i}.jsonl`));
  const args = device === undefined ? [] : ['--device', device];
  const env = { PAGERD_MEMORY_MIN_FREE: '8', PAGERD_MEMORY_MAX_FREE: '16' };
  let checked = 0;
  let acked = 0;
  const violations: string[] = [];
  for (let cycle = 1; cycle <= cycles; cycle++) {
    const daemon = await startDaemon({ stateDir, memory: '256KiB', args, env });
    if (cycle > 1 && !daemon.output().includes('"recovery":"ok"')) violations.push(`cycle ${cycle}: no integrity check ran at restart`);
    const client = await daemon.client();
    const result = await checkHistories(client, histories.slice(0, cycle > 1 ? WORKERS : 0), PAGES);
    checked += result.checked;
    acked = result.acked;
    violations.push(...result.violations.map((v) => `cycle ${cycle}: ${v}`));
    const scrub = await client.verify();
    if (!scrub.ok) violations.push(`cycle ${cycle}: scrub found ${JSON.stringify(scrub)}`);
    await client.close();
    if (violations.length > 0) {
      await daemon.kill();
      break;
    }
    const workers = histories.map((h, i) => spawnWorker(daemon.socket, h, i, cycle));
    await new Promise((r) => setTimeout(r, 150 + Math.random() * 450));
    await daemon.kill();
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.exitCode !== null) return resolve();
            const t = setTimeout(() => w.kill('SIGKILL'), 5000);
            w.once('exit', (code) => {
              clearTimeout(t);
              if (code === 2) violations.push(`cycle ${cycle}: a worker read bytes it did not write`);
              resolve();
            });
          }),
      ),
    );
  }
  return { checked, acked, violations };
}

describe('crash loop', () => {
  it('kill -9 under load from 4 clients, 100 times: nothing acknowledged lost, nothing torn, releases stay zero', async () => {
    const cycles = Number(process.env.CRASH_CYCLES ?? 100);
    const { checked, acked, violations } = await crashLoop(cycles);
    expect(violations.slice(0, 10)).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual((cycles - 2) * PAGES);
    expect(acked).toBeGreaterThan(cycles); // the load really ran: acknowledgements to check against
  }, 600_000);

  it.runIf(isRoot)('the same on a real loop device', async () => {
    const loop = attachLoopDevice(16 << 20);
    try {
      const { acked, violations } = await crashLoop(15, loop.path);
      expect(violations.slice(0, 10)).toEqual([]);
      expect(acked).toBeGreaterThan(15);
    } finally {
      loop.detach();
    }
  }, 300_000);
});

import { spawn } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connect, UIO_READ, UIO_WRITE, V_WORKING } from '../../src/client/index.js';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';
import { isRoot } from '../support/loop-device.js';
import { publicCopy } from '../support/public-copy.js';
import { storeDir } from '../support/store-files.js';

const FLOOD = (): string => join(publicCopy([]), 'dist/test/support/connection-flood.js');

interface FloodReport {
  open: number;
  outcomes: Record<string, number>;
}

/** Starts connection-flood.js as uid 2000 (in the socket's group); resolves with its report and a stop function. */
async function floodAs2000(socket: string, mode: 'half' | 'greeted', count: number): Promise<{ report: FloodReport; stop: () => void }> {
  const proc = spawn('setpriv', ['--reuid=2000', '--regid=0', '--clear-groups', process.execPath, FLOOD(), socket, mode, String(count)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    proc.once('exit', (code) => reject(new Error(`connection-flood exited with ${code}: ${out}`)));
  });
  return { report: JSON.parse(line) as FloodReport, stop: () => proc.stdin!.end() };
}

/** A daemon whose socket uid 2000 (group 0) may reach. */
async function sharedDaemon(env: NodeJS.ProcessEnv = {}): Promise<RunningDaemon> {
  const stateDir = storeDir('pagerd-fair-');
  chmodSync(stateDir, 0o755);
  return startDaemon({ stateDir, socket: join(stateDir, 'run', 'pagerd.sock'), env });
}

/** Median time of `n` connect + handshake + close round trips (ms). */
async function connectLatency(socket: string, n = 20): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const c = await connect({ socket, connectTimeoutMs: 2000 });
    times.push(performance.now() - started);
    await c.close();
  }
  return times.sort((a, b) => a - b)[n >> 1];
}

describe('one uid cannot take the listener from the others', () => {
  it.runIf(isRoot)('256 half-open connections of one uid: past its handshake share each is told EAGAIN; other uids connect as fast as ever', async () => {
    const daemon = await sharedDaemon();
    const before = await connectLatency(daemon.socket);
    const flood = await floodAs2000(daemon.socket, 'half', 256);
    try {
      expect(flood.report.open).toBe(64); // server.maxHandshakesPerUid
      expect(flood.report.outcomes).toEqual({ 'EAGAIN too-many-connections': 192 });
      const during = await connectLatency(daemon.socket);
      console.log(`connect + handshake, median of 20: ${before.toFixed(2)} ms at rest, ${during.toFixed(2)} ms beside 256 half-open connections of another uid`);
      const c = await connect({ socket: daemon.socket, connectTimeoutMs: 2000 });
      const vmid = await c.vmsCreate(V_WORKING, 4096);
      await c.vmMove(vmid, 0, 4, UIO_WRITE, { iov: [Uint8Array.from([1, 2, 3, 4])], offset: 0, resid: 4, segflg: 0 });
      await c.close();
    } finally {
      flood.stop();
    }
    expect(await daemon.stop()).toBe(0);
  });

  it.runIf(isRoot)('greeted idle connections are kept (no idle timeout), up to the uid’s share; past it, EAGAIN; other uids unaffected', async () => {
    const daemon = await sharedDaemon({ PAGERD_SERVER_MAX_CONNECTIONS_PER_UID: '32' });
    const flood = await floodAs2000(daemon.socket, 'greeted', 40);
    try {
      expect(flood.report).toEqual({ open: 32, outcomes: { 'EAGAIN too-many-connections': 8 } });
      await new Promise((r) => setTimeout(r, 1500));
      const probe = await connect({ socket: daemon.socket });
      expect((await probe.stats()).connections).toBe(33); // the idle ones are still there
      await probe.close();
    } finally {
      flood.stop();
    }
    expect(await daemon.stop()).toBe(0);
  });

  it('1,000 connects at once: each is welcomed or told why not, none is closed without a word', async () => {
    const daemon = await startDaemon();
    const outcomes = await Promise.all(
      Array.from({ length: 1000 }, () =>
        connect({ socket: daemon.socket }).then(
          (c) => c,
          (err: { code?: string; reason?: string }) => `${err.code} ${err.reason}`,
        ),
      ),
    );
    const clients = outcomes.filter((o) => typeof o !== 'string');
    const refusals = outcomes.filter((o): o is string => typeof o === 'string');
    expect(new Set(refusals).size).toBeLessThanOrEqual(1);
    if (refusals.length > 0) expect(refusals[0]).toBe('EAGAIN too-many-connections');
    expect(clients.length).toBeGreaterThanOrEqual(64);
    const first = clients[0];
    const vmid = await first.vmsCreate(V_WORKING, 4096);
    const buf = new Uint8Array(4);
    await first.vmMove(vmid, 0, 4, UIO_READ, { iov: [buf], offset: 0, resid: 4, segflg: 0 });
    await Promise.all(clients.map((c) => c.close()));
    expect(await daemon.stop()).toBe(0);
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ConnectOptions, type PagerClient } from '../src/client/index.js';

const PAGERD = join(import.meta.dirname, '../src/cli/pagerd.js');

export interface BenchDaemon {
  proc: ChildProcess;
  socket: string;
  /** The NBD socket (nbd.sock in the state directory). */
  nbdSocket: string;
  dir: string;
  devicePath: string;
  client(options?: ConnectOptions): Promise<PagerClient>;
  stop(): Promise<void>;
}

export interface BenchDaemonOptions {
  memory: string;
  device?: string;
  dir?: string;
  createBytes?: string;
  env?: NodeJS.ProcessEnv;
}

/** Starts the real daemon (from dist/) on a store in a temporary directory (or the given device). */
export async function startBenchDaemon(options: BenchDaemonOptions): Promise<BenchDaemon> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'pagerd-bench-'));
  const socket = join(dir, 'pagerd.sock');
  const nbdSocket = join(dir, 'nbd.sock');
  const devicePath = options.device ?? join(dir, 'backing');
  // The default device (<dir>/backing) is created at first start; a --device given must exist.
  const deviceArgs = options.device === undefined ? [] : ['--device', options.device];
  const args = [PAGERD, '--state-dir', dir, '--socket', socket, '--memory', options.memory, '--log-level', 'warn', ...deviceArgs, '--nbd-socket', nbdSocket];
  const proc = spawn(process.execPath, args, {
    env: {
      ...process.env,
      PAGERD_STORE_CREATE_BYTES: options.createBytes ?? '4GiB',
      PAGERD_WRITEBACK_MIN_AGE_MS: '0',
      PAGERD_SERVER_MAX_IN_FLIGHT: '256',
      ...options.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const c = await connect({ socket });
      await c.close();
      break;
    } catch {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`pagerd did not start: ${err}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return {
    proc,
    socket,
    nbdSocket,
    dir,
    devicePath,
    // Through the socket unless asked: the sections that measure the socket path stay on it.
    client: (options = {}) => connect({ socket, sharedFrames: false, ...options }),
    stop: async () => {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
    },
  };
}

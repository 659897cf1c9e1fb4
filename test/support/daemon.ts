import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { connect, type ConnectOptions, type PagerClient } from '../../src/client/index.js';
import { track } from './children.js';
import { storeDir } from './store-files.js';

export const PAGERD = join(import.meta.dirname, '../../dist/src/cli/pagerd.js');

export interface RunningDaemon {
  proc: ChildProcess;
  socket: string;
  stateDir: string;
  output: () => string;
  client(options?: ConnectOptions): Promise<PagerClient>;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL; resolves when the process is gone. */
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

export interface DaemonOptions {
  stateDir?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  memory?: string;
  socket?: string;
}

/** Starts the real pagerd as a process and waits until it is serving. */
export async function startDaemon(options: DaemonOptions = {}): Promise<RunningDaemon> {
  const stateDir = options.stateDir ?? storeDir('pagerd-daemon-');
  const socket = options.socket ?? join(stateDir, 'pagerd.sock');
  const args = [PAGERD, '--state-dir', stateDir, '--socket', socket, '--memory', options.memory ?? '4MiB', ...(options.args ?? [])];
  const proc = spawn(process.execPath, args, {
    env: { ...process.env, PAGERD_LOG_LEVEL: 'info', PAGERD_STORE_CREATE_BYTES: '64MiB', PAGERD_WRITEBACK_MIN_AGE_MS: '0', PAGERD_MEMORY_ALLOC_TIMEOUT_MS: '300', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pagerd did not start:\n${out}`)), 20_000);
    const check = (): void => {
      if (out.includes('"pagerd ready"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stderr!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`pagerd exited with ${code} before it was ready:\n${out}`));
    });
  });
  return {
    proc,
    socket,
    stateDir,
    output: () => out,
    client: (options = {}) => connect({ socket, ...options }),
    stop: async () => {
      proc.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
    exited,
  };
}

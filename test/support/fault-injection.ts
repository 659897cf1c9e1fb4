import { spawn, spawnSync } from 'node:child_process';

/** True when strace is installed (.ci/run installs it): fault tests name it when it is missing. */
export const haveStrace = spawnSync('strace', ['-V']).status === 0;

export interface Injection {
  /** Detaches strace: the process runs on unharmed. */
  stop(): Promise<void>;
}

/**
 * Makes every call of `syscalls` in process `pid` (all its threads, the thread pool included)
 * fail with `errno`, by attaching strace to it (`-e inject`), until stop(). Resolves once strace
 * has attached. A real failure of the real syscall, as a failing disk or a full WAL sync gives.
 */
export async function failSyscalls(pid: number, syscalls: readonly string[], errno = 'EIO'): Promise<Injection> {
  const list = syscalls.join(',');
  const strace = spawn('strace', ['-f', '-p', String(pid), '-e', `trace=${list}`, '-e', `inject=${list}:error=${errno}`, '-o', '/dev/null'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const exited = new Promise<void>((resolve) => strace.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    strace.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/attached/.test(err)) resolve();
    });
    void exited.then(() => reject(new Error(`strace could not attach to ${pid}: ${err}`)));
  });
  return {
    stop: async () => {
      strace.kill('SIGINT');
      await exited;
    },
  };
}

import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { track } from './children.js';

export const PAGERCTL = join(import.meta.dirname, '../../dist/src/cli/pagerctl.js');

export interface MapFileProcess {
  proc: ChildProcessByStdio<null, Readable, Readable>;
  /** The segment it serves (its first line of --json output). */
  vmid: number;
  /** Its output so far: the served line, then a line for each event (remounted). */
  stdout(): string;
  stderr(): string;
  /** Resolves with its exit code. */
  exited: Promise<number | null>;
}

/**
 * Starts `pagerctl --json map-file FILE ...args` and waits until it serves: answers its vmid.
 * `command` runs pagerctl (default: this Node on the checkout's; setpriv's prefix for another uid).
 * Throws with its stderr if it exits first.
 */
export async function startMapFile(socket: string, file: string, args: string[] = [], command: string[] = [process.execPath, PAGERCTL]): Promise<MapFileProcess> {
  const proc = spawn(command[0], [...command.slice(1), '--socket', socket, '--json', 'map-file', file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  track(proc);
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
  let gone = false;
  void exited.then(() => (gone = true));
  for (const deadline = Date.now() + 10_000; !out.includes('\n') && !gone && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
  if (!out.includes('\n')) throw new Error(`map-file served nothing: ${err}`);
  return { proc, vmid: (JSON.parse(out.split('\n')[0]) as { vmid: number }).vmid, stdout: () => out, stderr: () => err, exited };
}

/**
 * Runs `pagerctl map-file ...args` to its exit (SIGINT after `interruptAfterMs`, if it serves
 * until then): its exit code and stderr. For map-files that should be refused. `command` as
 * startMapFile's.
 */
export function runMapFile(socket: string, args: string[], interruptAfterMs = 10_000, command: string[] = [process.execPath, PAGERCTL]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const run = spawn(command[0], [...command.slice(1), '--socket', socket, 'map-file', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    run.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => run.kill('SIGINT'), interruptAfterMs);
    run.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/**
 * The plainest round trip a client can have with a peer process: 16 bytes over a Unix socket,
 * 4 KiB back, no framing code, no project code. The baseline for one request at a time.
 *
 *   node plain-ping-pong.js SOCKET      # the server, run in its own process
 */
import { fork, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { percentile } from './stats.js';

const REQUEST = 16;
const REPLY = 4096;

/** Starts the server in its own process; answers its socket path and process. */
export async function startPlainPong(dir: string): Promise<{ path: string; proc: ChildProcess }> {
  const path = join(dir, 'plain-pong.sock');
  const proc = fork(fileURLToPath(import.meta.url), [path], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  await new Promise<void>((resolve, reject) => proc.once('message', () => resolve()).once('exit', reject));
  return { path, proc };
}

/** `trips` ping-pongs one at a time: p50 and p99 latency (µs). */
export async function plainPingPong(path: string, trips: number): Promise<{ p50: number; p99: number }> {
  const socket = connect(path);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const ping = Buffer.alloc(REQUEST, 1);
  let received = 0;
  let done: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received >= REPLY) {
      received -= REPLY;
      done?.();
    }
  });
  const lat: number[] = [];
  for (let i = 0; i < trips; i++) {
    const t = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      done = resolve;
      socket.write(ping);
    });
    lat.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  socket.destroy();
  return { p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const pong = Buffer.alloc(REPLY, 7);
  createServer((socket) => {
    let pending = 0;
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.length;
      for (; pending >= REQUEST; pending -= REQUEST) socket.write(pong);
    });
    socket.on('error', () => undefined);
  }).listen(process.argv[2], () => process.send?.('ready'));
}

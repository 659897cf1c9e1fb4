import { fork, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { FrameDecoder, encodeFrame } from '../src/protocol/frame.js';

/** A client of the echo server: sends a frame of `requestBytes` asking for `replyBytes` back. */
export class RawClient {
  private readonly decoder = new FrameDecoder(64 << 20);
  private readonly waiting: (() => void)[] = [];

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const _frame of this.decoder.push(chunk)) this.waiting.shift()!();
    });
  }

  static async open(path: string): Promise<RawClient> {
    const socket = connect(path);
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawClient(socket);
  }

  request(requestBytes: number, replyBytes: number): Promise<void> {
    const payload = Buffer.alloc(Math.max(4, requestBytes), 1);
    payload.writeUInt32LE(replyBytes, 0);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.socket.write(encodeFrame(payload));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Starts the echo server in its own process. */
export async function startEchoServer(dir: string): Promise<{ path: string; proc: ChildProcess }> {
  const path = join(dir, 'echo.sock');
  const proc = fork(join(import.meta.dirname, 'echo-server.js'), [path], { stdio: 'ignore' });
  await new Promise((resolve) => proc.once('message', resolve));
  return { path, proc };
}

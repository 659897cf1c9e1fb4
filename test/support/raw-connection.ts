import { connect, type Socket } from 'node:net';
import { Kind, decodeReply, decodeStrategyIo, encodeHello, type Reply, type StrategyIo } from '../../src/protocol/codec.js';
import { FrameDecoder, encodeFrame } from '../../src/protocol/frame.js';

/** A raw protocol connection for fuzzing: sends arbitrary bytes, collects replies and the close. */
export class RawConnection {
  readonly replies: Reply[] = [];
  /** Strategy I/O requests the daemon sent (for a paging device this connection mounted). */
  readonly strategyRequests: StrategyIo[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder(64 << 20);
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.decoder.push(chunk)) {
        try {
          if (frame[0] === Kind.STRATEGY_IO) this.strategyRequests.push(decodeStrategyIo(frame));
          else this.replies.push(decodeReply(frame));
        } catch {
          // the welcome, or a frame that is not a reply: the fuzzer only counts replies
        }
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async open(path: string, hello = true): Promise<RawConnection> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const raw = new RawConnection(socket);
    if (hello) {
      socket.write(encodeFrame(encodeHello()));
      await raw.until(() => raw.decoder.pending === 0 && raw.welcomed(), 5000);
    }
    return raw;
  }

  private welcomedOnce = false;
  private welcomed(): boolean {
    // The welcome is the first frame back; it is not a reply, so it shows as data with no reply.
    this.welcomedOnce ||= this.socket.bytesRead > 0;
    return this.welcomedOnce;
  }

  send(bytes: Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until the condition holds (re-checked on every reply or close), or the time runs out. */
  async until(condition: () => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!condition()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }

  close(): void {
    this.socket.destroy();
  }
}

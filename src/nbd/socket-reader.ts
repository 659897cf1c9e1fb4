import type { Socket } from 'node:net';

/** The peer closed the connection, or it failed, before the bytes asked for arrived. */
export class ConnectionEnded extends Error {
  constructor() {
    super('the connection ended');
  }
}

/**
 * Reads exact byte counts from a socket, for a protocol read in fixed-size pieces (NBD's
 * handshake and requests). At most `highWater` bytes wait unread: past that the socket is paused
 * until they are taken, so a peer that sends faster than requests are served is held back.
 */
export class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiting: { bytes: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended = false;

  constructor(
    private readonly socket: Socket,
    private readonly highWater: number,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered >= this.highWater) socket.pause();
      this.serve();
    });
    const end = (): void => {
      this.ended = true;
      this.serve();
    };
    socket.once('end', end);
    socket.once('close', end);
  }

  /** Resolves with the next `bytes` bytes; rejects with ConnectionEnded if they never come. One read at a time. */
  read(bytes: number): Promise<Buffer> {
    if (this.waiting !== undefined) throw new Error('one read at a time');
    return new Promise((resolve, reject) => {
      this.waiting = { bytes, resolve, reject };
      this.serve();
    });
  }

  /** The next `bytes` bytes if they are here already (no promise, no turn of the event loop), else undefined. */
  readNow(bytes: number): Buffer | undefined {
    if (this.waiting !== undefined || this.buffered < bytes) return undefined;
    const out = this.take(bytes);
    if (this.buffered < this.highWater && !this.ended) this.socket.resume();
    return out;
  }

  /** Bytes received and not yet read (a request cut short leaves some). */
  get pending(): number {
    return this.buffered;
  }

  private serve(): void {
    const w = this.waiting;
    if (w === undefined) return;
    if (this.buffered >= w.bytes) {
      this.waiting = undefined;
      w.resolve(this.readNow(w.bytes)!);
    } else if (this.ended) {
      this.waiting = undefined;
      w.reject(new ConnectionEnded());
    } else {
      this.socket.resume(); // a read larger than the high water still gets its bytes
    }
  }

  private take(bytes: number): Buffer {
    this.buffered -= bytes;
    const first = this.chunks[0];
    if (first !== undefined && first.length >= bytes) {
      if (first.length === bytes) this.chunks.shift();
      else this.chunks[0] = first.subarray(bytes);
      return first.subarray(0, bytes);
    }
    const out = Buffer.allocUnsafe(bytes);
    let at = 0;
    while (at < bytes) {
      const c = this.chunks[0];
      const n = Math.min(c.length, bytes - at);
      c.copy(out, at, 0, n);
      at += n;
      if (n === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    }
    return out;
  }
}

/** Resolves once the socket has written what it queued ('drain'), or closed. */
export function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

import { connect, type Socket } from 'node:net';

/**
 * A bare NBD client for what no real client will do: malformed handshakes and requests, and
 * watching a connection's replies byte by byte. Real clients (qemu-img, nbdcopy, fio, nbdinfo)
 * test everything else.
 */
export class RawNbd {
  private buffered = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d]);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  static async connect(path: string): Promise<RawNbd> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawNbd(socket);
  }

  /** A connection in transmission on export `name` (greeted, NBD_OPT_GO accepted); throws if the server refuses it. */
  static async open(path: string, name: string): Promise<RawNbd> {
    const r = await RawNbd.connect(path);
    await r.greet();
    if (!(await r.go(name))) throw new Error(`NBD_OPT_GO ${name} was refused`);
    return r;
  }

  /** The next `n` bytes, or undefined if the server closed first. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered.length < n) {
      if (this.closed) return undefined;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes (${this.buffered.length} here)`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 50);
      });
    }
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }

  /** Resolves true once the server has closed the connection (within the timeout). */
  async closedByServer(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Reads the greeting and sends the client flags (fixed newstyle, no zeroes). */
  async greet(): Promise<void> {
    await this.read(18);
    this.write(u32(3));
  }

  /** Sends an option (IHAVEOPT, option, data). */
  option(opt: number, data: Uint8Array = Buffer.alloc(0)): void {
    const head = Buffer.alloc(16);
    head.writeBigUInt64BE(0x49484156454f5054n, 0);
    head.writeUInt32BE(opt, 8);
    head.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([head, data]));
  }

  /** Reads one option reply: its type and data. */
  async optionReply(): Promise<{ type: number; data: Buffer } | undefined> {
    const head = await this.read(20);
    if (head === undefined) return undefined;
    const data = await this.read(head.readUInt32BE(16));
    return { type: head.readUInt32BE(12), data: data ?? Buffer.alloc(0) };
  }

  /** NBD_OPT_GO on `name` (simple replies): true once in transmission. */
  async go(name: string): Promise<boolean> {
    const data = Buffer.concat([u32(Buffer.byteLength(name)), Buffer.from(name), Buffer.alloc(2)]);
    this.option(7, data);
    for (;;) {
      const r = await this.optionReply();
      if (r === undefined || r.type !== 3) return r?.type === 1;
    }
  }

  /** Sends a request. */
  request(type: number, cookie: number, offset: number, length: number, data?: Uint8Array, flags = 0): void {
    this.write(requestBytes(type, cookie, offset, length, data, flags));
  }

  /** Reads a simple reply (and `dataBytes` of read data after a success). */
  async simpleReply(dataBytes = 0): Promise<{ error: number; cookie: number; data?: Buffer } | undefined> {
    const head = await this.read(16);
    if (head === undefined) return undefined;
    const error = head.readUInt32BE(4);
    const cookie = Number(head.readBigUInt64BE(8));
    return { error, cookie, data: error === 0 && dataBytes > 0 ? await this.read(dataBytes) : undefined };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A request's bytes (its head, then a write's data), to send alone or several in one write. */
export function requestBytes(type: number, cookie: number, offset: number, length: number, data?: Uint8Array, flags = 0): Buffer {
  const head = Buffer.alloc(28);
  head.writeUInt32BE(0x25609513, 0);
  head.writeUInt16BE(flags, 4);
  head.writeUInt16BE(type, 6);
  head.writeBigUInt64BE(BigInt(cookie), 8);
  head.writeBigUInt64BE(BigInt(offset), 16);
  head.writeUInt32BE(length, 24);
  return data === undefined ? head : Buffer.concat([head, data]);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

import { allocBuffer } from './buffer-slab.js';
import { OPERATION_BY_CODE, OPERATIONS, type OperationName, type ValueKind } from './operations.js';
import { copyBytes } from '../copy-bytes.js';

/**
 * Messages inside frames. Pure: no sockets. Little-endian.
 *
 *   hello   : u8 kind=1, u16 protocol version
 *   welcome : u8 kind=2, u16 protocol version, u32 page size, u32 max payload, u8 flags (WelcomeFlag)
 *   request : u8 kind=3, u32 id, u16 op, u8 argc, values
 *   reply   : u8 kind=4, u32 id, u8 status (0 ok, 1 error), [error: s code, s reason, s detail], u8 count, values
 *   strategy I/O (daemon to the client that mounted a paging device):
 *             u8 kind=5, u32 request id, u32 device, u8 op (1 read, 2 write), n vmid, n page, u32 npages, b data (write; empty for a read)
 *   strategy done (the client's answer, outside the request stream: never held by its caps):
 *             u8 kind=6, u32 request id, u32 errno (0: done), b data (a read's npages × page size bytes; empty otherwise)
 *   value   : u8 tag (1 number: f64; 2 bytes: u32 length + bytes; 3 string: u32 length + UTF-8)
 */
export const PROTOCOL_VERSION = 3;

/** Bits of the welcome's flags. */
export const WelcomeFlag = {
  /** The daemon offers this peer its frames to map (the sharedFrames operation). */
  SHARED_FRAMES: 1,
} as const;

/**
 * Bytes a move's request or reply carries besides its data (generous): the largest move one
 * message may carry is the maximum payload less this. The client splits moves by it; the daemon
 * refuses larger ones.
 */
export const MESSAGE_OVERHEAD_BYTES = 1024;

export const Kind = { HELLO: 1, WELCOME: 2, REQUEST: 3, REPLY: 4, STRATEGY_IO: 5, STRATEGY_DONE: 6 } as const;
const TAG: Record<ValueKind, number> = { n: 1, b: 2, s: 3 };

export type Value = number | Uint8Array | string;

export interface Request {
  id: number;
  op: OperationName;
  args: Value[];
}

export interface ErrorAnswer {
  code: string;
  reason: string;
  detail: string;
}

export interface Reply {
  id: number;
  error?: ErrorAnswer;
  results: Value[];
}

/** A message that cannot be decoded. `id` is set when the request id could be read. */
export class DecodeError extends Error {
  constructor(
    message: string,
    readonly id?: number,
    /** The documented reason the daemon answers with. */
    readonly reason: 'malformed-request' | 'unknown-operation' = 'malformed-request',
  ) {
    super(message);
    this.name = 'DecodeError';
  }
}

/**
 * Builds one message. Fields are listed first and written once into a buffer of the exact size
 * (optionally behind the frame's length prefix): no per-field buffers, one copy of any bytes.
 */
class Writer {
  private readonly fields: (number | Value)[] = [];
  private readonly widths: number[] = [];
  private size = 0;
  /** Bytes that follow this buffer on the wire (see trailingBytes). */
  private trailing = 0;

  private add(field: number | Value, width: number): this {
    this.fields.push(field);
    this.widths.push(width);
    this.size += width;
    return this;
  }
  u8(v: number): this {
    return this.add(v, 1);
  }
  u16(v: number): this {
    return this.add(v, 2);
  }
  u32(v: number): this {
    return this.add(v, 4);
  }
  /** A tagged value. */
  value(v: Value): this {
    if (typeof v === 'number') return this.add(v, -9); // negative width: a tagged value
    if (typeof v === 'string') return this.add(v, -(5 + Buffer.byteLength(v, 'utf8')));
    return this.add(v, -(5 + v.length));
  }
  /**
   * The head of a bytes value, last in the message, whose `length` bytes are not in this buffer:
   * the sender writes them after it, from where they are (a page-out's frames, not copied).
   */
  trailingBytes(length: number): this {
    this.trailing = length;
    return this.u8(TAG.b).u32(length);
  }
  done(): Buffer {
    return this.write(0);
  }
  /** The message as one frame (length prefix included). */
  frame(): Buffer {
    return this.write(4);
  }
  private write(prefix: number): Buffer {
    let total = 0;
    for (const w of this.widths) total += Math.abs(w);
    const out = allocBuffer(prefix + total);
    if (prefix > 0) out.writeUInt32BE(total + this.trailing, 0);
    let at = prefix;
    for (let i = 0; i < this.fields.length; i++) {
      const f = this.fields[i];
      const w = this.widths[i];
      if (w === 1) out[at] = f as number;
      else if (w === 2) out.writeUInt16LE(f as number, at);
      else if (w === 4) out.writeUInt32LE(f as number, at);
      else if (typeof f === 'number') {
        out[at] = TAG.n;
        out.writeDoubleLE(f, at + 1);
      } else if (typeof f === 'string') {
        out[at] = TAG.s;
        out.writeUInt32LE(-w - 5, at + 1);
        out.write(f, at + 5, 'utf8');
      } else {
        out[at] = TAG.b;
        out.writeUInt32LE(-w - 5, at + 1);
        copyBytes(out, at + 5, f);
      }
      at += Math.abs(w);
    }
    return out;
  }
}

class Reader {
  private at = 0;
  constructor(
    private readonly buf: Buffer,
    public id?: number,
  ) {}
  private need(n: number): void {
    if (this.at + n > this.buf.length) throw new DecodeError(`truncated message (needs ${n} more bytes at ${this.at})`, this.id);
  }
  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.at++);
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  value(kind?: ValueKind): Value {
    const tag = this.u8();
    if (kind !== undefined && tag !== TAG[kind]) throw new DecodeError(`expected a value of kind ${kind}, got tag ${tag}`, this.id);
    if (tag === TAG.n) {
      this.need(8);
      const v = this.buf.readDoubleLE(this.at);
      this.at += 8;
      return v;
    }
    if (tag === TAG.b || tag === TAG.s) {
      const length = this.u32();
      this.need(length);
      const slice = this.buf.subarray(this.at, this.at + length);
      this.at += length;
      return tag === TAG.s ? slice.toString('utf8') : slice;
    }
    throw new DecodeError(`unknown value tag ${tag}`, this.id);
  }
  end(): void {
    if (this.at !== this.buf.length) throw new DecodeError(`${this.buf.length - this.at} bytes after the end of the message`, this.id);
  }
}

export function encodeHello(version = PROTOCOL_VERSION): Buffer {
  return new Writer().u8(Kind.HELLO).u16(version).done();
}

export function decodeHello(buf: Buffer): number {
  const r = new Reader(buf);
  if (r.u8() !== Kind.HELLO) throw new DecodeError('the first message must be a hello');
  const version = r.u16();
  r.end();
  return version;
}

export function encodeWelcome(pageSize: number, maxPayload: number, flags = 0): Buffer {
  return new Writer().u8(Kind.WELCOME).u16(PROTOCOL_VERSION).u32(pageSize).u32(maxPayload).u8(flags).done();
}

export function decodeWelcome(buf: Buffer): { version: number; pageSize: number; maxPayload: number; flags: number } {
  const r = new Reader(buf);
  if (r.u8() !== Kind.WELCOME) throw new DecodeError('expected a welcome');
  const welcome = { version: r.u16(), pageSize: r.u32(), maxPayload: r.u32(), flags: r.u8() };
  r.end();
  return welcome;
}

function requestWriter(req: Request): Writer {
  const w = new Writer().u8(Kind.REQUEST).u32(req.id).u16(OPERATIONS[req.op].code).u8(req.args.length);
  for (const a of req.args) w.value(a);
  return w;
}

export function encodeRequest(req: Request): Buffer {
  return requestWriter(req).done();
}

/** A request as a whole frame, ready to write. */
export function encodeRequestFrame(req: Request): Buffer {
  return requestWriter(req).frame();
}

/** Decodes a request and checks its arguments against the operation's kinds. */
export function decodeRequest(buf: Buffer): Request {
  const r = new Reader(buf);
  if (r.u8() !== Kind.REQUEST) throw new DecodeError('expected a request');
  const id = r.u32();
  r.id = id;
  const code = r.u16();
  const op = OPERATION_BY_CODE.get(code);
  if (op === undefined) throw new DecodeError(`unknown operation ${code}`, id, 'unknown-operation');
  const kinds = OPERATIONS[op].args;
  const argc = r.u8();
  if (argc !== kinds.length) throw new DecodeError(`${op} takes ${kinds.length} arguments, got ${argc}`, id);
  const args = kinds.map((k) => r.value(k));
  r.end();
  return { id, op, args };
}

/** A reply's message; with `trailing`, all but its last result (left for the caller to add). */
function replyWriter(reply: Reply, trailing = false): Writer {
  const w = new Writer().u8(Kind.REPLY).u32(reply.id).u8(reply.error ? 1 : 0);
  if (reply.error) w.value(reply.error.code).value(reply.error.reason).value(reply.error.detail);
  const n = reply.results.length;
  w.u8(n);
  for (let i = 0; i < (trailing ? n - 1 : n); i++) w.value(reply.results[i]);
  return w;
}

/** A reply as a whole frame, ready to write. */
export function encodeReplyFrame(reply: Reply): Buffer {
  return replyWriter(reply).frame();
}

/** Bytes shorter than this are copied into their reply's frame: a part of their own would cost the stream more. */
const TRAILING_MIN = 1024;

/**
 * A reply as the parts to write, in order: its frame, or, when its last result is bytes of at
 * least TRAILING_MIN (a read's data), the frame's head and then those bytes from where they are,
 * not copied. The bytes must not change until written (a reply owns them).
 */
export function encodeReplyParts(reply: Reply): Uint8Array[] {
  const last = reply.results[reply.results.length - 1];
  if (!(last instanceof Uint8Array) || last.length < TRAILING_MIN) return [encodeReplyFrame(reply)];
  return headThen(replyWriter(reply, true), last);
}

/** A message's head with its last field, `bytes`, announced as trailing; then those bytes, not copied. */
function headThen(head: Writer, bytes: Uint8Array): Uint8Array[] {
  return [head.trailingBytes(bytes.length).frame(), bytes];
}

export function decodeReply(buf: Buffer): Reply {
  const r = new Reader(buf);
  if (r.u8() !== Kind.REPLY) throw new DecodeError('expected a reply');
  const id = r.u32();
  const status = r.u8();
  const error = status === 1 ? { code: r.value('s') as string, reason: r.value('s') as string, detail: r.value('s') as string } : undefined;
  const count = r.u8();
  const results: Value[] = [];
  for (let i = 0; i < count; i++) results.push(r.value());
  r.end();
  return { id, error, results };
}

/** Operations of a strategy I/O request (WRITE_FRAMES: a write naming the frames of the daemon's shared pool that hold its pages). */
export const StrategyOp = { READ: 1, WRITE: 2, WRITE_FRAMES: 3 } as const;

export interface StrategyIo {
  id: number;
  device: number;
  op: 'read' | 'write';
  vmid: number;
  page: number;
  npages: number;
  /** A write's bytes (npages × page size); empty for a read, or a write by frame reference. */
  data: Uint8Array;
  /** A write by frame reference (WRITE_FRAMES): the shared pool's frame holding each page, in page order. */
  frames?: readonly number[];
}

export interface StrategyDone {
  id: number;
  /** 0 when the I/O was done; else the file system's errno. */
  errno: number;
  /** A read's bytes; empty otherwise. */
  data: Uint8Array;
}

/**
 * A strategy I/O request's frame as parts to write one after the other: its head, then a write's
 * pages as they are (the caller keeps them unchanged until they are written; none for a read).
 */
export function strategyIoFrameParts(io: Omit<StrategyIo, 'data'>, pages: readonly Uint8Array[]): Uint8Array[] {
  let length = 0;
  for (const page of pages) length += page.length;
  const head = strategyIoHead(io, io.op === 'read' ? StrategyOp.READ : StrategyOp.WRITE)
    .trailingBytes(length)
    .frame();
  // Pages in adjacent frames go as one part: each part written costs the stream a call of its own.
  const parts: Uint8Array[] = [head];
  for (let first = 0; first < pages.length; ) {
    const start = pages[first];
    let end = start.byteOffset + start.length;
    let next = first + 1;
    while (next < pages.length && pages[next].buffer === start.buffer && pages[next].byteOffset === end) end += pages[next++].length;
    parts.push(next === first + 1 ? start : new Uint8Array(start.buffer, start.byteOffset, end - start.byteOffset));
    first = next;
  }
  return parts;
}

/**
 * A strategy write by frame reference as one frame: its head, then the frame number of each page
 * (u32, little-endian) where a write's bytes would be. The caller keeps those frames unchanged
 * until the strategy answers.
 */
export function encodeStrategyWriteByReference(io: Omit<StrategyIo, 'data' | 'op' | 'frames'>, frames: readonly number[]): Buffer {
  const numbers = Buffer.allocUnsafe(frames.length * 4);
  frames.forEach((f, i) => numbers.writeUInt32LE(f, i * 4));
  return strategyIoHead(io, StrategyOp.WRITE_FRAMES).value(numbers).frame();
}

/** A strategy I/O request's fields before its bytes (or frame numbers). */
function strategyIoHead(io: Omit<StrategyIo, 'data' | 'op' | 'frames'>, op: number): Writer {
  return new Writer().u8(Kind.STRATEGY_IO).u32(io.id).u32(io.device).u8(op).value(io.vmid).value(io.page).u32(io.npages);
}

export function decodeStrategyIo(buf: Buffer): StrategyIo {
  const r = new Reader(buf);
  if (r.u8() !== Kind.STRATEGY_IO) throw new DecodeError('expected a strategy I/O request');
  const id = r.u32();
  const device = r.u32();
  const op = r.u8();
  if (op !== StrategyOp.READ && op !== StrategyOp.WRITE && op !== StrategyOp.WRITE_FRAMES) throw new DecodeError(`unknown strategy operation ${op}`, id);
  const io: StrategyIo = { id, device, op: op === StrategyOp.READ ? 'read' : 'write', vmid: r.value('n') as number, page: r.value('n') as number, npages: r.u32(), data: r.value('b') as Uint8Array };
  r.end();
  if (op !== StrategyOp.WRITE_FRAMES) return io;
  const numbers = io.data;
  if (numbers.length !== io.npages * 4) throw new DecodeError(`a write by frame reference of ${io.npages} pages names ${numbers.length / 4} frames`, id);
  const view = new DataView(numbers.buffer, numbers.byteOffset, numbers.length);
  return { ...io, data: new Uint8Array(0), frames: Array.from({ length: io.npages }, (_, i) => view.getUint32(i * 4, true)) };
}

/** A strategy's answer as a whole frame. */
export function encodeStrategyDoneFrame(done: StrategyDone): Buffer {
  return strategyDoneHead(done).value(done.data).frame();
}

/** A strategy answer's fields before its data. */
function strategyDoneHead(done: StrategyDone): Writer {
  return new Writer().u8(Kind.STRATEGY_DONE).u32(done.id).u32(done.errno);
}

/** A strategy's answer as the parts to write: a read's data of at least TRAILING_MIN after the frame head, not copied (as encodeReplyParts). */
export function strategyDoneFrameParts(done: StrategyDone): Uint8Array[] {
  if (done.data.length < TRAILING_MIN) return [encodeStrategyDoneFrame(done)];
  return headThen(strategyDoneHead(done), done.data);
}

export function decodeStrategyDone(buf: Buffer): StrategyDone {
  const r = new Reader(buf);
  if (r.u8() !== Kind.STRATEGY_DONE) throw new DecodeError('expected a strategy answer');
  const done = { id: r.u32(), errno: r.u32(), data: r.value('b') as Uint8Array };
  r.end();
  return done;
}

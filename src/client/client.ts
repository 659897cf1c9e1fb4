import { connect as netConnect, type Socket } from 'node:net';
import { ERRNO, PagerError, type ErrorCode, type Reason } from '../errors.js';
import { UIO_READ, UIO_WRITE } from '../constants.js';
import { MESSAGE_OVERHEAD_BYTES, decodeReply, decodeWelcome, encodeHello, encodeRequestFrame, type Reply, type Value } from '../protocol/codec.js';
import { FrameDecoder, encodeFrame } from '../protocol/frame.js';
import { TurnWriter } from '../protocol/turn-writer.js';
import { addScrubChunk, emptyScrubTotals, type ScrubTotals } from '../store/scrub-report.js';
import { IovCursor, type Uio } from '../vm/uio.js';

export type { Uio };
import type { OperationName } from '../protocol/operations.js';

/** For services that may wait: aborting the signal interrupts a wait on a V_INTRSEG segment (EINTR). */
export interface WaitOptions {
  signal?: AbortSignal;
}

export interface ConnectOptions {
  /** Socket path; default $PAGERD_SOCKET, then ./var/pagerd.sock. */
  socket?: string;
}

const EMPTY = new Uint8Array(0);

/** A connection to pagerd. Methods are named after the services; each resolves on 0 and rejects with a PagerError otherwise. */
export class PagerClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private closedError: Error | undefined;
  private readonly writer: TurnWriter;

  private constructor(
    private readonly socket: Socket,
    /** Page size of the daemon's store. */
    readonly pageSize: number,
    private readonly maxPayload: number,
    decoder: FrameDecoder,
  ) {
    this.writer = new TurnWriter(socket);
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        const reply = decodeReply(frame);
        const waiter = this.pending.get(reply.id);
        if (waiter !== undefined) {
          this.pending.delete(reply.id);
          waiter.resolve(reply);
        } else if (reply.id === 0 && reply.error) {
          this.closedError = toError(reply);
        }
      }
    });
    socket.on('close', () => {
      const err = this.closedError ?? Object.assign(new Error('connection to pagerd closed'), { code: 'ECONNRESET' });
      this.closedError = err;
      for (const w of this.pending.values()) w.reject(err);
      this.pending.clear();
    });
    socket.on('error', (err) => {
      this.closedError ??= err;
    });
  }

  /** Connects and greets the daemon. */
  static async connect(options: ConnectOptions = {}): Promise<PagerClient> {
    const path = options.socket ?? process.env.PAGERD_SOCKET ?? './var/pagerd.sock';
    const socket = netConnect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const decoder = new FrameDecoder(64 * 1024 * 1024);
    const welcome = await new Promise<Buffer>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        const frames = decoder.push(chunk);
        if (frames.length > 0) {
          socket.off('data', onData);
          if (frames.length > 1) reject(new Error('pagerd sent more than a welcome'));
          resolve(frames[0]);
        }
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error('pagerd closed the connection during the handshake')));
      socket.write(encodeFrame(encodeHello()));
    });
    const { pageSize, maxPayload } = decodeWelcome(welcome);
    return new PagerClient(socket, pageSize, maxPayload, decoder);
  }

  /**
   * Sends a request and resolves with its reply. Aborting `signal` asks the daemon to cancel it: a
   * wait on a V_INTRSEG segment then ends with EINTR (other waits are not interruptible).
   */
  private call(op: OperationName, args: Value[], signal?: AbortSignal): Promise<Reply> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const id = this.takeId();
    if (signal === undefined) {
      return new Promise<Reply>((resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        this.send(op, args, id);
      });
    }
    const cancel = (): void => {
      if (this.pending.has(id) && this.closedError === undefined) this.send('cancel', [id], this.takeId());
    };
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send(op, args, id);
      if (signal.aborted) cancel();
      else signal.addEventListener('abort', cancel, { once: true });
    }).finally(() => signal.removeEventListener('abort', cancel));
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    return id;
  }

  /** Writes a request; those of one turn of the event loop go out together. */
  private send(op: OperationName, args: Value[], id: number): void {
    this.writer.write(encodeRequestFrame({ id, op, args }));
  }

  private async results(op: OperationName, args: Value[], signal?: AbortSignal): Promise<Value[]> {
    const reply = await this.call(op, args, signal);
    if (reply.error) throw toError(reply);
    return reply.results;
  }

  vmsCreate(type: number, size: number, options = 0, mode = 0o600): Promise<number> {
    return this.results('vmsCreate', [type, size, options, mode]).then((r) => r[0] as number);
  }
  async vmsDelete(vmid: number): Promise<void> {
    await this.results('vmsDelete', [vmid]);
  }
  vmAtt(vmid: number, offset: number, access: 'read' | 'write' = 'write'): Promise<number> {
    return this.results('vmAtt', [vmid, offset, access]).then((r) => r[0] as number);
  }
  async vmDet(vaddr: number): Promise<void> {
    await this.results('vmDet', [vaddr]);
  }
  ioAtt(nbytes: number): Promise<number> {
    return this.results('ioAtt', [nbytes]).then((r) => r[0] as number);
  }
  async vmWrite(vaddr: number, nbytes: number, force: number | boolean): Promise<void> {
    await this.results('vmWrite', [vaddr, nbytes, Number(force)]);
  }
  async vmRelease(vaddr: number, nbytes: number): Promise<void> {
    await this.results('vmRelease', [vaddr, nbytes]);
  }

  /** vm_move: moves min(limit, uio.resid) bytes; updates uio in place; resolves to the bytes moved. */
  vmMove(vmid: number, offset: number, limit: number, rw: number, uio: Uio, options: WaitOptions = {}): Promise<number> {
    return this.move(vmid, offset, limit, rw, uio, options.signal);
  }

  /** vm_uiomove: as vmMove, at segment offset uio.offset. */
  vmUiomove(vmid: number, limit: number, rw: number, uio: Uio, options: WaitOptions = {}): Promise<number> {
    return this.move(vmid, undefined, limit, rw, uio, options.signal);
  }

  /**
   * Moves in pieces that fit the daemon's maximum payload, one after another, so a long move keeps
   * its semantics: the uio advances by what moved, also when an error stops it part-way.
   */
  private async move(vmid: number, offset: number | undefined, limit: number, rw: number, uio: Uio, signal?: AbortSignal): Promise<number> {
    const piece = Math.max(1, this.maxPayload - MESSAGE_OVERHEAD_BYTES);
    let moved = 0;
    const wellFormed = Array.isArray(uio?.iov) && uio.iov.every((b) => b instanceof Uint8Array);
    const total = wellFormed ? uio.iov.reduce((n, b) => n + b.length, 0) : 0;
    // A uio the daemon cannot see whole (its buffers stay here) is sent so that it answers EFAULT.
    const resid = wellFormed && uio.resid <= total ? uio.resid : -1;
    const wanted = typeof limit === 'number' && typeof uio?.resid === 'number' ? Math.min(limit, uio.resid) : 0;
    do {
      const bytes = Math.min(piece, Math.max(0, wanted - moved));
      const pieceLimit = moved === 0 && bytes === 0 ? limit : bytes;
      const data = rw === UIO_WRITE && bytes > 0 && resid >= 0 ? gather(uio.iov, total - uio.resid, bytes) : EMPTY;
      const at = offset === undefined ? [] : [offset + moved];
      const reply = await this.call(offset === undefined ? 'vmUiomove' : 'vmMove', [vmid, ...at, pieceLimit, rw, uio?.offset, resid < 0 ? -1 : uio.resid, uio?.segflg, data], signal);
      const done = (reply.results[0] as number | undefined) ?? 0;
      if (rw === UIO_READ && done > 0) new IovCursor(uio.iov, total - uio.resid).writeFrom(reply.results[1] as Uint8Array, 0, done);
      if (done > 0) {
        uio.resid -= done;
        uio.offset += done;
        moved += done;
      }
      if (reply.error) throw toError(reply);
      if (done < bytes || bytes === 0) break;
    } while (moved < wanted);
    return moved;
  }

  async vmIoaccessp(bsid: number, pfirst: number, npages: number, modifier: number): Promise<void> {
    await this.results('vmIoaccessp', [bsid, pfirst, npages, modifier]);
  }
  async vmWritep(vmid: number, pfirst: number, npages: number): Promise<void> {
    await this.results('vmWritep', [vmid, pfirst, npages]);
  }
  async vmReleasep(vmid: number, pfirst: number, npages: number): Promise<void> {
    await this.results('vmReleasep', [vmid, pfirst, npages]);
  }
  async vmFlushp(vmid: number, pfirst: number, npages: number): Promise<void> {
    await this.results('vmFlushp', [vmid, pfirst, npages]);
  }
  async vmReadp(vmid: number, pfirst: number, npages: number, flags = 0): Promise<void> {
    await this.results('vmReadp', [vmid, pfirst, npages, flags]);
  }
  async vmMakep(vmid: number, pno: number): Promise<void> {
    await this.results('vmMakep', [vmid, pno]);
  }
  async vmInvalidatep(vmid: number, pfirst: number, npages: number): Promise<void> {
    await this.results('vmInvalidatep', [vmid, pfirst, npages]);
  }
  vmQpages(vmid: number): Promise<number> {
    return this.results('vmQpages', [vmid]).then((r) => r[0] as number);
  }
  vmQmodify(vmid: number): Promise<boolean> {
    return this.results('vmQmodify', [vmid]).then((r) => r[0] === 1);
  }
  async vmsIowait(vmid: number, options: WaitOptions = {}): Promise<void> {
    await this.results('vmsIowait', [vmid], options.signal);
  }
  async vmsIowaitf(vmid: number, flags: number, options: WaitOptions = {}): Promise<void> {
    await this.results('vmsIowaitf', [vmid, flags], options.signal);
  }
  /** Daemon statistics (frames, counters, slots, connections). */
  stats(): Promise<Record<string, unknown>> {
    return this.results('stats', []).then((r) => JSON.parse(r[0] as string));
  }
  /** Segments the caller may see. */
  segments(): Promise<Record<string, number>[]> {
    return this.results('segments', []).then((r) => JSON.parse(r[0] as string));
  }
  /**
   * Scrubs the store (root or the daemon's user): every mapped slot against its checksum, in
   * chunks, calling onProgress(done, total) after each.
   */
  async verify(onProgress?: (done: number, total: number) => void): Promise<ScrubTotals> {
    const report = emptyScrubTotals();
    let at: { vmid: number; pno: number } | null = { vmid: -1, pno: -1 };
    while (at !== null) {
      const [text] = await this.results('verify', [at.vmid, at.pno, 1024]);
      const chunk = JSON.parse(text as string);
      addScrubChunk(report, chunk);
      onProgress?.(report.pages, chunk.total);
      at = chunk.next;
    }
    return report;
  }
  /** Prometheus text. */
  metrics(): Promise<string> {
    return this.results('metrics', []).then((r) => r[0] as string);
  }

  /** Closes the connection (its attachments end with it). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.end();
    });
  }
}

function toError(reply: Reply): PagerError | Error {
  const e = reply.error!;
  if (e.code in ERRNO) {
    const err = new PagerError(e.reason as Reason, e.detail);
    if (err.code === (e.code as ErrorCode)) return err;
  }
  return Object.assign(new Error(`${e.code} (${e.reason}): ${e.detail}`), e);
}

/** The next `length` bytes of the iovecs after `skip`: a view when they lie in one iovec, else a copy. */
function gather(iov: Uint8Array[], skip: number, length: number): Uint8Array {
  let rest = skip;
  for (const buf of iov) {
    if (rest < buf.length) {
      if (rest + length <= buf.length) return buf.subarray(rest, rest + length);
      break;
    }
    rest -= buf.length;
  }
  const out = new Uint8Array(length);
  new IovCursor(iov, skip).readInto(out, 0, length);
  return out;
}

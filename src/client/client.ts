import { connect as netConnect, type Socket } from 'node:net';
import { ERRNO, PagerError, REASONS, errnoNumber, type Reason } from '../errors.js';
import { UIO_READ, UIO_SYSSPACE, UIO_USERSPACE, UIO_WRITE } from '../constants.js';
import {
  Kind,
  MESSAGE_OVERHEAD_BYTES,
  WelcomeFlag,
  decodeReply,
  decodeStrategyIo,
  decodeWelcome,
  encodeHello,
  encodeRequestFrame,
  strategyDoneFrameParts,
  type Reply,
  type StrategyIo,
  type Value,
} from '../protocol/codec.js';
import { frameReferenceWrite } from './frame-reference-write.js';
import { SharedFrameReader } from './shared-frame-reader.js';
import { allocBuffer } from '../protocol/buffer-slab.js';
import { FrameDecoder, encodeFrame } from '../protocol/frame.js';
import { RecycledBuffers } from '../protocol/recycled-buffers.js';
import { TurnWriter } from '../protocol/turn-writer.js';
import { addScrubChunk, emptyScrubTotals, type ScrubTotals } from '../scrub-report.js';
import { IovCursor, type Uio } from '../uio.js';

export type { Uio };
import type { OperationName } from '../protocol/operations.js';

/** For services that may wait: aborting the signal interrupts a wait on a V_INTRSEG segment (EINTR). */
export interface WaitOptions {
  signal?: AbortSignal;
}

export interface ConnectOptions {
  /** Socket path; default $PAGERD_SOCKET, then ./var/pagerd.sock. */
  socket?: string;
  /** Bound on connecting plus the handshake (ms); past it connect() rejects with ETIMEDOUT. Default 10 s. */
  connectTimeoutMs?: number;
  /**
   * Map the daemon's frames, when it offers them to this process, and read resident pages from
   * them without a round trip (vmMove and vmUiomove reads, tryReadResident). Default true.
   */
  sharedFrames?: boolean;
}

/** A segment as `segments()` lists it. */
export interface SegmentInfo {
  vmid: number;
  type: number;
  options: number;
  extent: number;
  uid: number;
  gid: number;
  mode: number;
  residentPages: number;
  /** The paging device of a client segment bound to one (vmsCreate with a device, vmSetdevid); else null. */
  device: number | null;
  /** True while that device's connection is open and its strategy answers in time. */
  deviceLive: boolean;
}

/** vmsCreate's options as an object: AIX option bits, mode, and the paging device of a client segment. */
export interface CreateOptions {
  options?: number;
  mode?: number;
  device?: number;
}

/** One I/O the daemon asks of a strategy routine: pages [page, page + npages) of segment vmid. */
export interface StrategyRequest {
  op: 'read' | 'write';
  vmid: number;
  page: number;
  npages: number;
  /**
   * npages × page size bytes: to fill (read), or to make durable (write). Valid until the
   * strategy settles: the library then sends a read's bytes from here, and reuses a write's memory
   * for later requests. A view into a larger buffer: never use its whole `buffer`. On a device
   * mounted with `sharedFrames`, a write's bytes may be the daemon's frames themselves, mapped
   * read-only: a strategy that writes into them is killed by SIGSEGV.
   */
  readonly data: Uint8Array;
  /**
   * A write by frame reference's bytes where they lie, in order: views of the daemon's frames (a
   * run of adjacent frames each, read-only), the same bytes as `data`, which joins them into one
   * buffer on first use, a copy unless they are one run. A strategy that can write pieces
   * (pwritev) reads these instead, and copies nothing. Absent for other requests.
   */
  readonly pages?: readonly Uint8Array[];
}

/** vmMounte's options. */
export interface MountOptions {
  /**
   * Page-outs read the daemon's shared frames (docs/external-pager.md): the daemon sends the
   * frame numbers instead of the bytes, and holds the frames unchanged until the strategy
   * answers. Writers of those pages wait meanwhile; this connection's own writes of them answer
   * EDEADLK. Used only where the daemon offers this connection its frames (else the bytes come
   * as usual). Default false.
   */
  sharedFrames?: boolean;
}

/** A client file system's strategy routine (vmMounte). */
export type Strategy = (io: StrategyRequest) => Promise<void> | void;

/** The errno a strategy's error hands the caller: its numeric errno (Node's are negative), its code's, else EIO. */
function errnoOf(err: unknown): number {
  const { errno, code } = (err ?? {}) as { errno?: unknown; code?: unknown };
  if (typeof errno === 'number' && Number.isInteger(errno) && errno !== 0 && Math.abs(errno) < 4096) return Math.abs(errno);
  return (typeof code === 'string' ? errnoNumber(code) : undefined) ?? ERRNO.EIO;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** How long after a failed attempt to map shared frames the next read may try again. */
const SHARED_RETRY_MS = 1000;

/** Operations after which pages may read differently: reads from shared frames wait while one is in flight. */
const PAGE_CHANGING: ReadonlySet<OperationName> = new Set(['vmRelease', 'vmReleasep', 'vmMakep', 'vmInvalidatep', 'vmIoaccessp', 'vmsDelete', 'vmsDeleteFrom']);

function changesPages(op: OperationName, args: Value[]): boolean {
  if (op === 'vmMove') return args[3] !== UIO_READ;
  if (op === 'vmUiomove') return args[2] !== UIO_READ;
  return PAGE_CHANGING.has(op);
}
/** Largest frame the client accepts: a reply carries at most the daemon's maximum payload. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;
const EMPTY = new Uint8Array(0);
/** Bytes one read of the socket may take. */
const READ_BUFFER_BYTES = 256 * 1024;
/** A frame with at least this much still to come is read into directly (see connect). */
const DIRECT_READ_MIN_BYTES = 16 * 1024;
/** Frame buffers kept for reuse: a device's strategy requests in flight (16 of 256 KiB), about twice over. */
const RECYCLED_FRAME_BYTES = 8 * 1024 * 1024;

/** Where a connection's socket hands what it read (the handshake, then the client), and the buffers its large frames are assembled in. */
interface SocketReads {
  /** Takes a read: `decode` answers the frames it completed, or throws on a stream that breaks the framing. */
  deliver: (decode: () => Buffer[]) => void;
  /** Strategy requests' frames are handed back once served (a page-out of 64 pages is 256 KiB). */
  readonly frames: RecycledBuffers;
}

/**
 * A connection to pagerd. Methods are named after the services; each resolves on 0 and rejects
 * with a PagerError otherwise.
 *
 *   connecting ──(welcome)──► open ──(close, socket error, bad frame)──► closed
 *
 * Nothing the daemon (or something posing as it) sends can throw out of an event handler: a frame
 * that cannot be decoded, or that is no reply, destroys the connection and rejects every pending
 * call with EPROTO (protocol-error); a connection that closes rejects them with ECONNRESET
 * (connection-closed), or with the error the daemon said it closed for.
 */
export class PagerClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private closedError: Error | undefined;
  private readonly writer: TurnWriter;
  /**
   * Segments this connection has read through the daemon, which checked its access then: only
   * those are read from shared frames (the mapping itself shows every segment's pages).
   */
  private readonly readable = new Set<number>();
  /** The daemon's frames, mapped read-only, once asked for and mapped. */
  private shared: SharedFrameReader | undefined;
  private sharedAsked: Promise<boolean> | undefined;
  /** Requests in flight on this connection that may change pages: shared reads wait for them (go through the daemon). */
  private changesInFlight = 0;
  /** Why shared frames are not in use although the daemon offered them. */
  sharedFramesError: Error | undefined;
  private readonly closeWaiters: ((why: Error) => void)[] = [];
  /** Strategy routines of the paging devices this connection mounted, by device id. */
  private readonly strategies = new Map<number, Strategy>();

  private constructor(
    private readonly socket: Socket,
    /** Page size of the daemon's store. */
    readonly pageSize: number,
    private readonly maxPayload: number,
    /** Where the socket's reads go (it reads into one buffer of its own: see connect). */
    private readonly reads: SocketReads,
    /** Where the daemon listens: shared frames are asked for on a connection of their own. */
    private readonly path: string,
    /** The daemon offers this connection its frames, and the caller did not turn them off. */
    private readonly sharedOffered: boolean,
    private readonly connectTimeoutMs: number,
  ) {
    this.writer = new TurnWriter(socket);
    reads.deliver = (decode) => this.onData(decode);
    socket.on('close', () => this.fail(new PagerError('connection-closed')));
    socket.on('error', (err) => {
      this.closedError ??= new PagerError('connection-closed', err.message);
    });
  }

  /**
   * Connects and greets the daemon. Rejects with ETIMEDOUT (connect-timeout) when that takes
   * longer than connectTimeoutMs, ECONNRESET (connection-closed) or EPROTO (protocol-error) as for
   * calls, EINVAL (bad-argument) for a connectTimeoutMs that is not a positive number, and with
   * Node's own system error (ENOENT, ECONNREFUSED, EACCES) when the socket cannot be reached.
   */
  static async connect(options: ConnectOptions = {}): Promise<PagerClient> {
    const path = options.socket ?? process.env.PAGERD_SOCKET ?? './var/pagerd.sock';
    const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) throw new PagerError('bad-argument', `connectTimeoutMs must be a positive number of ms, not ${String(timeoutMs)}`);
    // The socket reads into one buffer (no buffer allocated per read); the decoder copies each
    // frame out of it, except the rest of a large frame, which the next reads land in directly,
    // in a buffer recycled once a strategy request is served.
    const reads: SocketReads = { deliver: () => {}, frames: new RecycledBuffers(RECYCLED_FRAME_BYTES) };
    const decoder = new FrameDecoder(MAX_REPLY_BYTES, { reusedChunks: true, allocate: (size) => reads.frames.take(size) });
    const readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
    const socket = netConnect({
      path,
      onread: {
        buffer: () => decoder.readTarget(DIRECT_READ_MIN_BYTES) ?? readBuffer,
        callback: (n, into) => {
          reads.deliver(() => (into === readBuffer ? decoder.push(readBuffer.subarray(0, n)) : decoder.received(n)));
          return true;
        },
      },
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      const welcome = await new Promise<Buffer>((resolve, reject) => {
        timer = setTimeout(() => reject(new PagerError('connect-timeout', `no welcome from ${path} within ${timeoutMs} ms`)), timeoutMs);
        const onData = (decode: () => Buffer[]): void => {
          let frames: Buffer[];
          try {
            frames = decode();
          } catch (err) {
            return reject(new PagerError('protocol-error', (err as Error).message));
          }
          // The client takes over the reads before the next one (in this turn's microtasks).
          if (frames.length === 0) return;
          if (frames.length > 1) reject(new PagerError('protocol-error', 'the daemon sent more than a welcome'));
          else resolve(frames[0]);
        };
        reads.deliver = onData;
        socket.once('error', (err: NodeJS.ErrnoException) => {
          // Accepted, then closed under the hello: as a close. Not reachable at all (ENOENT,
          // ECONNREFUSED, EACCES): Node's own error, with the path in its message.
          if (err.code === 'EPIPE' || err.code === 'ECONNRESET') reject(new PagerError('connection-closed', `pagerd at ${path} closed the connection during the handshake`));
          else reject(Object.assign(err, { message: `cannot connect to pagerd at ${path}: ${err.message}` }));
        });
        socket.once('close', () => reject(new PagerError('connection-closed', 'pagerd closed the connection during the handshake')));
        socket.write(encodeFrame(encodeHello()));
      });
      const { pageSize, maxPayload, flags } = decodeWelcomeOrError(welcome);
      const offered = (flags & WelcomeFlag.SHARED_FRAMES) !== 0 && options.sharedFrames !== false;
      socket.removeAllListeners('close');
      socket.removeAllListeners('error');
      return new PagerClient(socket, pageSize, maxPayload, reads, path, offered, timeoutMs);
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private onData(decode: () => Buffer[]): void {
    try {
      for (const frame of decode()) {
        if (frame[0] === Kind.STRATEGY_IO) {
          this.serveStrategy(decodeStrategyIo(frame), frame);
          continue;
        }
        const reply = decodeReply(frame);
        const waiter = this.pending.get(reply.id);
        if (waiter !== undefined) {
          this.pending.delete(reply.id);
          waiter.resolve(reply);
        } else if (reply.id === 0 && reply.error) {
          this.closedError ??= toError(reply); // why the daemon is about to close
        } else {
          throw new Error(`a reply to request ${reply.id}, which is not pending`);
        }
      }
    } catch (err) {
      this.fail(new PagerError('protocol-error', (err as Error).message));
      this.socket.destroy();
    }
  }

  /** Resolves with why once the connection is over (the daemon stopped, or closed it). */
  closed(): Promise<Error> {
    if (this.closedError !== undefined) return Promise.resolve(this.closedError);
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /** The connection is over: every pending call, and every later one, rejects with why. */
  private fail(error: PagerError): void {
    this.closedError ??= error;
    for (const wake of this.closeWaiters.splice(0)) wake(this.closedError);
    for (const w of this.pending.values()) w.reject(this.closedError);
    this.pending.clear();
  }

  /**
   * Sends a request and resolves with its reply. Aborting `signal` asks the daemon to cancel it: a
   * wait on a V_INTRSEG segment then ends with EINTR (other waits are not interruptible).
   */
  private call(op: OperationName, args: Value[], signal?: AbortSignal): Promise<Reply> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    if (changesPages(op, args)) {
      // Reads from shared frames wait for it: a read issued after it must not see the pages before it.
      this.changesInFlight++;
      return this.callNow(op, args, signal).finally(() => this.changesInFlight--);
    }
    return this.callNow(op, args, signal);
  }

  private callNow(op: OperationName, args: Value[], signal?: AbortSignal): Promise<Reply> {
    const id = this.takeId();
    if (signal === undefined) {
      return new Promise<Reply>((resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        this.send(op, args, id);
      });
    }
    const cancel = (): void => {
      if (!this.pending.has(id) || this.closedError !== undefined) return;
      const cancelId = this.takeId();
      this.pending.set(cancelId, { resolve: () => {}, reject: () => {} }); // its reply says nothing
      this.send('cancel', [id], cancelId);
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

  /**
   * vms_create. `options`: the AIX option bits, or `{ options, mode, device }`: `device` (from
   * vmMounte) makes a V_CLIENT segment paged by that device's strategy routine.
   */
  vmsCreate(type: number, size: number, options: number | CreateOptions = 0, mode = 0o600): Promise<number> {
    if (typeof options === 'object' && options !== null) {
      const { options: bits = 0, mode: m = 0o600, device } = options;
      if (device !== undefined) return this.results('vmsCreateOn', [type, size, bits, m, device]).then((r) => r[0] as number);
      return this.results('vmsCreate', [type, size, bits, m]).then((r) => r[0] as number);
    }
    return this.results('vmsCreate', [type, size, options, mode]).then((r) => r[0] as number);
  }

  /**
   * vm_mounte: adds a paging device served by `strategy` (on this connection) and answers its id.
   * The daemon calls `strategy(io)` for page-ins and page-outs of segments bound to it
   * (docs/external-pager.md): fill `io.data` for a read; make `io.data` durable for a write. An
   * error with a numeric `errno` (or a Node system error's `code`) reaches the caller of the
   * service that caused the I/O as that errno; any other as EIO.
   */
  async vmMounte(strategy: Strategy, options: MountOptions = {}): Promise<number> {
    const byReference = options.sharedFrames === true && (await this.sharedFramesReady());
    const [id] = await this.results(byReference ? 'vmMounteFrames' : 'vmMounte', []);
    this.strategies.set(id as number, strategy);
    return id as number;
  }

  /** vm_umount: removes a paging device once its I/O has drained; EBUSY while segments are bound to it. */
  async vmUmount(device: number): Promise<void> {
    await this.results('vmUmount', [device]);
    this.strategies.delete(device);
  }

  /**
   * vm_setdevid: binds a client segment to another paging device (I/O in flight completes on the
   * old one). With `from`, only while it is bound to that device (0: to none), else EBUSY
   * `segment-rebound`: two programs taking over one segment cannot both succeed.
   */
  async vmSetdevid(vmid: number, device: number, options: { from?: number } = {}): Promise<void> {
    if (options.from === undefined) await this.results('vmSetdevid', [vmid, device]);
    else await this.results('vmSetdevidFrom', [vmid, device, options.from]);
  }

  /** The paging device table: each device, its uid, the segments bound to it that this caller may see, its I/O. */
  async devices(): Promise<{ id: number; uid: number; alive: boolean; sharedFrames: boolean; segments: number[]; inFlight: number; queued: number; requests: number }[]> {
    const [text] = await this.results('devices', []);
    return JSON.parse(text as string);
  }

  /** What the strategy is handed for a request: a read's zeroed buffer to fill, a write's bytes, or a write's frames where they lie. */
  private strategyRequest(io: StrategyIo): { request: StrategyRequest; joined?: () => Buffer | undefined } {
    const { op, vmid, page, npages } = io;
    // Zeroed: a strategy that fills less must not send this process's old memory as page bytes.
    if (op === 'read') return { request: { op, vmid, page, npages, data: allocBuffer(npages * this.pageSize).fill(0) } };
    if (io.frames === undefined) return { request: { op, vmid, page, npages, data: io.data } };
    const runs = this.shared?.frameRuns(io.frames);
    if (runs === undefined) throw new Error(`a write by frame reference names frames this connection has not mapped (${io.frames.join(', ')})`);
    return frameReferenceWrite(vmid, page, npages, runs, (size) => this.reads.frames.take(size));
  }

  /**
   * Serves one strategy request of the daemon and answers it (outside the request stream), then
   * hands its `frame` back for reuse (a write's bytes are a view of it), and the buffer a write by
   * frame reference was joined into.
   */
  private serveStrategy(io: StrategyIo, frame: Buffer): void {
    const strategy = this.strategies.get(io.device);
    const { request, joined } = this.strategyRequest(io);
    const answer = (errno: number): void => {
      if (this.closedError !== undefined) return;
      for (const part of strategyDoneFrameParts({ id: io.id, errno, data: errno === 0 && io.op === 'read' ? request.data : EMPTY })) this.writer.write(part);
    };
    if (strategy === undefined) return answer(errnoNumber('ENODEV')!);
    let running: Promise<void>;
    try {
      running = Promise.resolve(strategy(request));
    } catch (err) {
      running = Promise.reject(err);
    }
    running
      .then(
        () => answer(0),
        (err: unknown) => answer(errnoOf(err)),
      )
      .finally(() => {
        this.reads.frames.give(frame);
        const copy = joined?.();
        if (copy !== undefined) this.reads.frames.give(copy);
      });
  }

  /**
   * vms_delete. With `from` (a client segment's paging device, 0 for none), only while the segment
   * is bound to that device, else EBUSY `segment-rebound`: a file system stopping does not delete
   * a segment another program took over meanwhile.
   */
  async vmsDelete(vmid: number, options: { from?: number } = {}): Promise<void> {
    if (options.from !== undefined) await this.results('vmsDeleteFrom', [vmid, options.from]);
    else await this.results('vmsDelete', [vmid]);
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
    if (rw === UIO_READ && resid > 0 && this.readShared(vmid, offset ?? uio.offset, wanted, uio, total)) return wanted;
    // Every piece carries where the whole move ends: the daemon checks the extent for all of it.
    const requestEnd = (offset ?? uio?.offset) + Math.max(0, wanted);
    do {
      const bytes = Math.min(piece, Math.max(0, wanted - moved));
      const pieceLimit = moved === 0 && bytes === 0 ? limit : bytes;
      const data = rw === UIO_WRITE && bytes > 0 && resid >= 0 ? gather(uio.iov, total - uio.resid, bytes) : EMPTY;
      const at = offset === undefined ? [] : [offset + moved];
      const reply = await this.call(offset === undefined ? 'vmUiomove' : 'vmMove', [vmid, ...at, pieceLimit, rw, uio?.offset, resid < 0 ? -1 : uio.resid, uio?.segflg, requestEnd, data], signal);
      const done = (reply.results[0] as number | undefined) ?? 0;
      if (rw === UIO_READ && done > 0) new IovCursor(uio.iov, total - uio.resid).writeFrom(reply.results[1] as Uint8Array, 0, done);
      if (done > 0) {
        uio.resid -= done;
        uio.offset += done;
        moved += done;
      }
      if (reply.error) throw toError(reply);
      if (rw === UIO_READ) {
        this.readable.add(vmid);
        void this.sharedFramesReady(); // the first read asks: a client that never reads pays nothing
      }
      if (done < bytes || bytes === 0) break;
    } while (moved < wanted);
    return moved;
  }

  /**
   * A read of `length` bytes at `offset` served whole from shared frames, as the daemon would
   * serve it (resident pages of a segment it let this connection read, a plain uio), with the uio
   * advanced; false, with the uio as it was, if any of it must go through the daemon.
   */
  private readShared(vmid: number, offset: number, length: number, uio: Uio, total: number): boolean {
    const shared = this.sharedFor(vmid);
    if (shared === undefined || length <= 0) return false;
    // Only what the daemon would accept as it is: anything else goes to it for its answer.
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length)) return false;
    if (!Number.isSafeInteger(uio.offset) || uio.offset < 0 || !Number.isSafeInteger(uio.resid) || (uio.segflg !== UIO_USERSPACE && uio.segflg !== UIO_SYSSPACE)) return false;
    if (shared.copy(vmid, offset, length, new IovCursor(uio.iov, total - uio.resid)) < length) return false;
    uio.resid -= length;
    uio.offset += length;
    return true;
  }

  /**
   * Copies bytes of segment `vmid` from `offset` into `into` straight from shared frames, without
   * a round trip and without a promise; answers the bytes copied: as far as the pages are resident
   * and this connection has read the segment through the daemon before (vmMove checks access),
   * else 0, also while a request of this connection that may change pages is in flight, when
   * shared frames are not in use, or once the connection has closed (then use vmMove). EINVAL
   * (bad-argument) for a vmid or offset that is not an integer ≥ 0, or `into` not a Uint8Array.
   */
  tryReadResident(vmid: number, offset: number, into: Uint8Array): number {
    if (!Number.isSafeInteger(vmid) || !Number.isSafeInteger(offset) || offset < 0 || !(into instanceof Uint8Array)) {
      throw new PagerError('bad-argument', 'tryReadResident takes an integer vmid, an offset ≥ 0 and a Uint8Array');
    }
    return this.sharedFor(vmid)?.copy(vmid, offset, into.length, new IovCursor([into], 0)) ?? 0;
  }

  /**
   * The mapping, if a read of `vmid` may use it now: mapped, the connection open (once closed, the
   * daemon may be gone or restarted: its old frames say nothing), no request of this connection
   * in flight that may change pages, and the segment read through the daemon before.
   */
  private sharedFor(vmid: number): SharedFrameReader | undefined {
    if (this.closedError !== undefined || this.changesInFlight > 0 || !this.readable.has(vmid)) return undefined;
    return this.shared;
  }

  /** True when reads of resident pages come from shared frames (the daemon offered them and they are mapped). */
  get usesSharedFrames(): boolean {
    return this.shared !== undefined;
  }

  /**
   * Asks for the daemon's frames if it offers them (the first read through the daemon does this
   * on its own, without waiting) and resolves to whether they are mapped.
   */
  sharedFramesReady(): Promise<boolean> {
    if (!this.sharedOffered) return Promise.resolve(false);
    this.sharedAsked ??= SharedFrameReader.open(this.path, this.connectTimeoutMs).then(
      (reader) => ((this.shared = reader), (this.sharedFramesError = undefined), true),
      (err: unknown) => {
        // A failed attempt (the daemon at a connection cap, say) may be made again a second later.
        this.sharedFramesError = err as Error;
        setTimeout(() => (this.sharedAsked = undefined), SHARED_RETRY_MS).unref();
        return false;
      },
    );
    return this.sharedAsked;
  }

  async vmIoaccessp(bsid: number, pfirst: number, npages: number, modifier: number, options: WaitOptions = {}): Promise<void> {
    await this.results('vmIoaccessp', [bsid, pfirst, npages, modifier], options.signal);
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
  async vmReadp(vmid: number, pfirst: number, npages: number, flags = 0, options: WaitOptions = {}): Promise<void> {
    await this.results('vmReadp', [vmid, pfirst, npages, flags], options.signal);
  }
  async vmMakep(vmid: number, pno: number, options: WaitOptions = {}): Promise<void> {
    await this.results('vmMakep', [vmid, pno], options.signal);
  }
  async vmInvalidatep(vmid: number, pfirst: number, npages: number, options: WaitOptions = {}): Promise<void> {
    await this.results('vmInvalidatep', [vmid, pfirst, npages], options.signal);
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
  /** Segments the caller may see: their record, resident pages, and the paging device of a client segment bound to one. */
  segments(): Promise<SegmentInfo[]> {
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

  /**
   * Begins a backup (root or the daemon's uid): the daemon holds page-outs until backupFinish or
   * until this connection closes, and answers the device's path for the caller to copy.
   */
  backupBegin(): Promise<string> {
    return this.results('backupBegin', []).then((r) => r[0] as string);
  }

  /** Ends a backup: the daemon writes a snapshot of its metadata into its state directory, lets page-outs go on, and answers the snapshot's path. */
  backupFinish(): Promise<string> {
    return this.results('backupFinish', []).then((r) => r[0] as string);
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

/** The welcome; or, when the daemon answered the hello with an error (a version it does not speak), that error. */
function decodeWelcomeOrError(frame: Buffer): { pageSize: number; maxPayload: number; flags: number } {
  try {
    return decodeWelcome(frame);
  } catch (err) {
    let reply: Reply;
    try {
      reply = decodeReply(frame);
    } catch {
      throw new PagerError('protocol-error', (err as Error).message);
    }
    throw reply.error ? toError(reply) : new PagerError('protocol-error', 'the daemon answered the hello with a reply');
  }
}

function toError(reply: Reply): PagerError | Error {
  const e = reply.error!;
  if (e.reason in REASONS) {
    // A file system's errno comes with its own name (ESTALE ...), not the registry's.
    const errno = e.reason === 'file-system-error' ? errnoNumber(e.code) : undefined;
    const fsErrno = errno === undefined ? undefined : { code: e.code, errno };
    const err = new PagerError(e.reason as Reason, e.detail, fsErrno);
    if (err.code === e.code) return err;
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

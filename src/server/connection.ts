import type { Socket } from 'node:net';
import { PagerError, isPagerError } from '../errors.js';
import {
  DecodeError,
  PROTOCOL_VERSION,
  decodeHello,
  decodeRequest,
  decodeStrategyDone,
  encodeReplyFrame,
  encodeReplyParts,
  Kind,
  type StrategyDone,
  encodeWelcome,
  WelcomeFlag,
  type Reply,
  type Value,
} from '../protocol/codec.js';
import { closeFd, sendWithFds, setSendBuffer } from '../native/addon.js';
import { FrameDecoder, FrameTooLargeError, encodeFrame } from '../protocol/frame.js';
import { TurnWriter } from '../protocol/turn-writer.js';
import type { ClientContext } from '../vm/context.js';
import type { SharedFramesOffer } from '../vm/frame-pool.js';
import { HANDLERS, promisedReplyBytes, type Answer, type HandlerEnv, type Outcome } from './handlers.js';
import { socketFd } from './listener.js';

export interface ConnectionLimits {
  maxPayloadBytes: number;
  maxInFlight: number;
  maxQueuedBytes: number;
  stalledDropMs: number;
  idleTimeoutMs: number;
  partialFrameTimeoutMs: number;
  handshakeTimeoutMs: number;
}

export interface ConnectionLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** What a connection needs from the daemon. */
export interface ConnectionHost {
  pageSize: number;
  limits: ConnectionLimits;
  env(ctx: ClientContext, cancel: (id: number) => void): HandlerEnv;
  /** Called with each request's operation, duration and outcome (metrics; `detail` only when tracing). */
  observe(op: string, seconds: number, ok: boolean, detail: () => object): void;
  /** Called once when the handshake is over, either way (its slot in the handshake cap is free). */
  handshakeDone(): void;
  /** True while the reply bytes queued and promised over all connections exceed server.maxQueuedBytesTotal. */
  overBudget(): boolean;
  /** Descriptors of the shared frame pool for this peer, if it is offered them (new ones: the connection closes them). */
  sharedFramesFor(): SharedFramesOffer | undefined;
  /** Whether this peer is offered shared frames (the welcome says so). */
  offersSharedFrames(): boolean;
  /** A strategy routine's answer arrived (a paging device this connection mounted). */
  strategyDone(answer: StrategyDone): void;
  /** True while this connection serves a paging device it mounted. */
  servesDevices(): boolean;
}

/**
 * One client connection's life: hello, then requests until either side closes.
 *
 *   hello ──(version ok)──► ready ──(close, error, drop)──► closed
 *
 * Requests run concurrently and are answered as they finish (out of order, by id). Backpressure:
 * at maxInFlight requests, or with more than maxQueuedBytes of replies unread, the connection stops
 * reading; one that stays stalled for stalledDropMs is dropped. Nothing a client sends can crash
 * the daemon: an undecodable request gets an error reply; an unframeable stream gets an error and
 * a close.
 */
export class Connection {
  private readonly decoder: FrameDecoder;
  private state: 'hello' | 'ready' | 'closed' = 'hello';
  private readonly inFlight = new Map<number, Cancellation>();
  /** Reply bytes promised to requests in flight (reads): counted with the queued ones against maxQueuedBytes. */
  private promisedBytes = 0;
  private handshakeTimer: NodeJS.Timeout | undefined;
  /** Set while paused for the daemon-wide budget: no event of this connection's own would resume it. */
  private budgetTimer: NodeJS.Timeout | undefined;
  /** Frames read but not yet started, held while the connection is at its caps. */
  private readonly backlog: Buffer[] = [];
  private backlogBytes = 0;
  private readonly writer: TurnWriter;
  /** Set by a graceful stop: nothing new starts. */
  private stopped = false;
  private pumping = false;
  private partialTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly env: HandlerEnv;
  private readonly closedWaiters: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private sendBufferWidened = false;

  constructor(
    private readonly socket: Socket,
    ctx: ClientContext,
    private readonly host: ConnectionHost,
    private readonly log: ConnectionLog,
  ) {
    this.decoder = new FrameDecoder(host.limits.maxPayloadBytes);
    this.writer = new TurnWriter(socket);
    this.env = host.env(ctx, (id) => this.inFlight.get(id)?.cancel());
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', (err) => log.debug({ err }, 'connection error'));
    socket.on('close', () => this.onClose());
    this.handshakeTimer = setTimeout(() => {
      this.log.info({}, 'dropping a client that did not finish its handshake in time');
      this.socket.destroy();
    }, host.limits.handshakeTimeoutMs);
    this.touch();
  }

  /** Resolves once no request is being served (a graceful stop waits for this). */
  idle(): Promise<void> {
    return this.inFlight.size === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  /** Resolves when the connection has closed. */
  closed(): Promise<void> {
    return this.state === 'closed' ? Promise.resolve() : new Promise((r) => this.closedWaiters.push(r));
  }

  /**
   * Stops starting new requests (graceful stop); requests in flight still get their replies. A
   * connection serving a paging device is still read: the stop's page-outs of its segments need
   * its strategy's answers.
   */
  stopReading(): void {
    this.stopped = true;
    if (!this.host.servesDevices()) this.socket.pause();
  }

  /** Ends the connection after its replies are written. */
  end(): void {
    this.socket.end();
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.touch();
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      if (err instanceof FrameTooLargeError) return this.fail(new PagerError('frame-too-large', err.message));
      throw err;
    }
    for (const frame of frames) {
      // A strategy's answer is not a request: it is never held by the caps (a request of this
      // connection may be waiting on the page-in it answers).
      if (frame[0] === Kind.STRATEGY_DONE && this.state === 'ready') {
        this.onStrategyDone(frame);
        continue;
      }
      this.backlog.push(frame);
      this.backlogBytes += frame.length;
    }
    // Read past the caps (for strategy answers), a connection's backlog is still bounded.
    if (this.backlogBytes > this.host.limits.maxQueuedBytes + this.host.limits.maxPayloadBytes) {
      return this.fail(new PagerError('malformed-request', `more than ${this.host.limits.maxQueuedBytes} bytes of requests sent past the connection's caps`));
    }
    this.pump();
    this.armPartialTimer();
  }

  /** Reply bytes this connection holds: queued for the socket, and promised to reads in flight. */
  get heldBytes(): number {
    return this.socket.writableLength + this.promisedBytes;
  }

  /**
   * True while the connection may start another request: under maxInFlight, with its held reply
   * bytes under maxQueuedBytes, and the daemon under its total budget. A connection holding
   * nothing may always start one (so a read larger than the cap is served alone, and nobody
   * starves while others hold the budget).
   */
  private get hasRoom(): boolean {
    const limits = this.host.limits;
    const held = this.heldBytes;
    if (held === 0 && this.inFlight.size === 0) return true;
    return this.inFlight.size < limits.maxInFlight && held <= limits.maxQueuedBytes && !this.host.overBudget();
  }

  /**
   * Starts backlogged frames while there is room; stops reading the socket while there is not.
   * One chunk from the socket can hold many requests: the caps apply to each, not to the chunk.
   */
  private pump(): void {
    // A request answered at once calls pump again from inside this loop: the loop goes on instead.
    if (this.stopped || this.pumping) return;
    this.pumping = true;
    try {
      while (this.backlog.length > 0 && this.state !== 'closed' && (this.state === 'hello' || this.hasRoom)) {
        const frame = this.backlog.shift()!;
        this.backlogBytes -= frame.length;
        if (this.state === 'hello') this.onHello(frame);
        else this.onRequest(frame);
      }
    } finally {
      this.pumping = false;
    }
    if (this.state === 'closed') return;
    if (this.backlog.length === 0 && this.hasRoom) return void this.socket.resume();
    // At its caps, a connection serving a paging device keeps reading (its requests wait in the
    // bounded backlog): its strategy's answers, which a request may be waiting on, come on it.
    if (this.host.servesDevices()) return void this.socket.resume();
    this.socket.pause();
    // Paused for the budget others hold, perhaps with no event of its own to come (its reply
    // flushed without a 'drain', nothing in flight): look again soon.
    if (this.budgetTimer === undefined && this.state === 'ready' && this.host.overBudget()) {
      this.budgetTimer = setTimeout(() => {
        this.budgetTimer = undefined;
        this.pump();
      }, BUDGET_RETRY_MS);
    }
  }

  private onStrategyDone(frame: Buffer): void {
    let answer: StrategyDone;
    try {
      answer = decodeStrategyDone(frame);
    } catch (err) {
      return this.fail(new PagerError('malformed-request', `a strategy answer that cannot be decoded: ${(err as Error).message}`));
    }
    this.host.strategyDone(answer);
  }

  /**
   * Writes one frame given as parts (a strategy request: its head, then a page-out's frames,
   * written from where they are); `written` is called once the socket has taken the last part,
   * or at once if the connection is closed.
   */
  sendFrame(parts: readonly Uint8Array[], written: () => void): void {
    if (this.state === 'closed' || this.socket.destroyed) return written();
    if (!this.sendBufferWidened) {
      // A 256 KiB page-out takes several wake-ups of both sides through the default buffer (208
      // KiB); a device's requests in flight fit in this one where net.core.wmem_max allows it.
      this.sendBufferWidened = true;
      try {
        this.log.debug({ sendBufferBytes: setSendBuffer(socketFd(this.socket), STRATEGY_SEND_BUFFER_BYTES) }, 'widened the send buffer of a connection serving a paging device');
      } catch (err) {
        this.log.debug({ err }, 'could not widen the send buffer of a connection serving a paging device');
      }
    }
    this.write(parts, written);
    // Sent at once, not at the end of the turn: the file system starts on it while the daemon
    // goes on with the rest of a batch of requests, whose replies may be waiting on it (a batch's
    // page-ins otherwise reach the file system together, and the three processes take turns).
    this.writer.flush();
  }

  private onHello(frame: Buffer): void {
    let version: number;
    try {
      version = decodeHello(frame);
    } catch {
      return this.fail(new PagerError('not-hello'));
    }
    if (version !== PROTOCOL_VERSION) return this.fail(new PagerError('protocol-version', `the daemon speaks version ${PROTOCOL_VERSION}, not ${version}`));
    this.state = 'ready';
    this.endHandshake();
    this.send(encodeWelcome(this.host.pageSize, this.host.limits.maxPayloadBytes, this.host.offersSharedFrames() ? WelcomeFlag.SHARED_FRAMES : 0));
  }

  /**
   * Answers a sharedFrames request: its reply frame goes with the pool's descriptors in one
   * sendmsg, once everything written before it has left (replies keep their order), and the
   * connection then ends: the client asks on a connection of its own, made for this.
   */
  private handOverSharedFrames(id: number): void {
    const offer = this.host.sharedFramesFor();
    if (offer === undefined) return this.reply({ id, error: answer(new PagerError('shared-frames-not-offered')), results: [] });
    const frame = encodeReplyFrame({ id, results: [offer.framesBytes, offer.accessBytes] });
    let handed = false;
    const release = (): void => {
      if (handed) return;
      handed = true;
      closeFd(offer.framesFd);
      closeFd(offer.accessFd);
    };
    const send = (): void => {
      if (handed || this.socket.destroyed) return release();
      if (this.socket.writableLength > 0) return void this.socket.once('drain', send);
      try {
        sendWithFds(socketFd(this.socket), frame, [offer.framesFd, offer.accessFd]);
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'could not hand over shared frames (the peer left?)');
      } finally {
        release();
        this.socket.end();
      }
    };
    this.socket.once('close', release); // a peer gone before the handover: its descriptors are not kept
    setImmediate(send); // after this turn's replies are uncorked (TurnWriter)
  }

  private onRequest(frame: Buffer): void {
    let request;
    try {
      request = decodeRequest(frame);
    } catch (err) {
      const known = err instanceof DecodeError ? err : new DecodeError(String(err));
      const error = new PagerError(known.reason, known.message);
      if (known.id === undefined) return this.fail(error);
      return this.reply({ id: known.id, error: answer(error), results: [] });
    }
    if (request.op === 'sharedFrames') return this.handOverSharedFrames(request.id);
    if (this.inFlight.has(request.id)) {
      return this.reply({ id: request.id, error: answer(new PagerError('malformed-request', `request id ${request.id} is already in flight`)), results: [] });
    }
    const cancellation = new Cancellation();
    this.inFlight.set(request.id, cancellation);
    const promised = promisedReplyBytes(request.op, request.args);
    this.promisedBytes += promised;
    const started = performance.now();
    const finish = (outcome: Outcome): void => {
      this.host.observe(request.op, (performance.now() - started) / 1e3, outcome.error === undefined, () => ({
        args: request.args.map(traceable),
        result: outcome.error === undefined ? outcome.results.map(traceable) : `${outcome.error.code} (${outcome.error.reason})`,
      }));
      this.promisedBytes -= promised;
      this.inFlight.delete(request.id);
      if (this.inFlight.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      this.reply({ id: request.id, error: outcome.error && answer(outcome.error), results: outcome.results });
      this.pump();
    };
    const failed = (err: unknown): void => {
      if (!isPagerError(err)) this.log.error({ err, op: request.op }, 'request failed unexpectedly');
      finish({ results: [], error: isPagerError(err) ? err : new PagerError('internal-error', (err as Error)?.message ?? String(err)) });
    };
    const done = (out: Answer): void => finish(Array.isArray(out) ? { results: out } : out);
    let answered: Answer | Promise<Answer>;
    try {
      answered = HANDLERS[request.op](this.env, request.args, () => cancellation.signal);
    } catch (err) {
      return failed(err);
    }
    // A move of resident pages answers at once: no promise, no extra turn.
    if (answered instanceof Promise) answered.then(done, failed);
    else done(answered);
  }

  private reply(reply: Reply): void {
    this.write(encodeReplyParts(reply));
  }

  private send(payload: Buffer): void {
    this.write([encodeFrame(payload)]);
  }

  /**
   * Writes one frame, given as its parts in order (with the others of this turn: many requests in
   * flight finish together); `written` once the last part is handed on, or at once if closed.
   */
  private write(parts: readonly Uint8Array[], written?: () => void): void {
    if (this.state === 'closed' || this.socket.destroyed) return written?.();
    for (let i = 0; i < parts.length - 1; i++) this.writer.write(parts[i]);
    this.writer.write(parts[parts.length - 1], written);
    const queued = this.socket.writableLength;
    // Paused for replies it does not read; a connection serving a paging device is still read: its strategy's answers come on it (its requests wait in a bounded backlog).
    if (queued > this.host.limits.maxQueuedBytes && !this.host.servesDevices()) this.socket.pause();
    if (queued > STALL_WATCH_BYTES && this.stallTimer === undefined) this.watchStall(queued);
  }

  /**
   * Drops the connection if its queued replies have not shrunk below `queued` within
   * stalledDropMs: a client that does not read holds its replies' memory, whatever cap paused it.
   */
  private watchStall(queued: number): void {
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      const now = this.socket.writableLength;
      if (now === 0) return;
      if (now < queued) return this.watchStall(now); // it reads, slowly
      this.log.warn({ queued: now }, 'dropping a client that does not read its replies');
      this.socket.destroy();
    }, this.host.limits.stalledDropMs);
  }

  private onDrain(): void {
    if (this.stallTimer !== undefined) {
      clearTimeout(this.stallTimer);
      this.stallTimer = undefined;
    }
    this.pump();
  }

  /** Answers an error the stream cannot recover from, then closes. */
  private fail(error: PagerError): void {
    this.log.info({ reason: error.reason }, 'closing a connection that broke the protocol');
    this.reply({ id: 0, error: answer(error), results: [] });
    this.state = 'closed';
    this.socket.end();
    this.socket.destroySoon?.();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private armPartialTimer(): void {
    if (this.decoder.pending === 0) {
      if (this.partialTimer !== undefined) clearTimeout(this.partialTimer);
      this.partialTimer = undefined;
    } else if (this.partialTimer === undefined) {
      this.partialTimer = setTimeout(() => {
        this.log.info({ pending: this.decoder.pending }, 'dropping a client that left a frame incomplete');
        this.socket.destroy();
      }, this.host.limits.partialFrameTimeoutMs);
    }
  }

  private touch(): void {
    if (this.host.limits.idleTimeoutMs <= 0) return;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.inFlight.size === 0) this.socket.end();
      else this.touch();
    }, this.host.limits.idleTimeoutMs);
  }

  private endHandshake(): void {
    clearTimeout(this.handshakeTimer);
    this.host.handshakeDone();
  }

  private onClose(): void {
    this.state = 'closed';
    this.endHandshake();
    for (const timer of [this.partialTimer, this.stallTimer, this.idleTimer, this.budgetTimer]) if (timer !== undefined) clearTimeout(timer);
    for (const cancellation of this.inFlight.values()) cancellation.cancel();
    for (const waiter of this.closedWaiters.splice(0)) waiter();
  }
}

/** Queued reply bytes past which a connection is watched for not reading them (stalledDropMs). */
const STALL_WATCH_BYTES = 256 * 1024;

/** Send buffer asked for on a connection serving a paging device (the kernel caps it at net.core.wmem_max). */
const STRATEGY_SEND_BUFFER_BYTES = 4 * 1024 * 1024;

/** How often a connection paused for the daemon-wide reply budget looks again (ms). */
const BUDGET_RETRY_MS = 20;

/** A request's cancellation, with its AbortController made only if something waits on it. */
class Cancellation {
  private controller: AbortController | undefined;
  private cancelled = false;

  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    if (this.cancelled) this.controller.abort();
    return this.controller.signal;
  }

  cancel(): void {
    this.cancelled = true;
    this.controller?.abort();
  }
}

/** A value as a request trace shows it: bytes by their length. */
function traceable(v: Value): number | string {
  return v instanceof Uint8Array ? `${v.length} bytes` : v;
}

function answer(error: PagerError): { code: string; reason: string; detail: string } {
  return { code: error.code, reason: error.reason, detail: error.detail };
}

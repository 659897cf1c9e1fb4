import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { LoggedWrites } from './statement-log.js';

/** What the writer's thread is started with. */
export interface WriterData {
  port: MessagePort;
  /**
   * [0]: requests answered so far (the thread adds one after posting each answer, so a blocked
   * drain() wakes); [1]: 1 once the thread has exited (an 'error' event cannot reach a drain()).
   */
  answered: Int32Array;
}

/** A transaction to commit on the connection to `databasePath` (opened at its first), or with `close`, that connection closed. */
export interface WriterRequest {
  id: number;
  databasePath: string;
  writes?: LoggedWrites;
  close?: true;
}

export interface WriterAnswer {
  id: number;
  error?: { code?: string; message: string };
}

/** Told how a request ended: undefined if it succeeded, else the error (with SQLite's code). */
export type CommitDone = (error: (Error & { code?: string }) | undefined) => void;

/** The writer's thread has stopped (a bug killed it, or it stopped answering): no transaction sent to it can commit. */
export class WriterStoppedError extends Error {
  constructor(cause: Error) {
    super(`the metadata writer's thread has stopped: ${cause.message}`, { cause });
    this.name = 'WriterStoppedError';
  }
}

/** How long drain() waits for an answer before it gives up on the thread: a transaction takes milliseconds, a checkpoint's syncs rarely a second. */
const DRAIN_LIMIT_MS = 20_000;

/**
 * The thread every store of this process commits in (started at the first request, and left to
 * end with the process): one thread, not one per store, as a store opened costs a thread's start.
 */
class WriterThread {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly answered = new Int32Array(new SharedArrayBuffer(8));
  private readonly pending = new Map<number, CommitDone>();
  private nextId = 1;
  /** Why the thread stopped (its uncaught error), if it did. */
  private stopped: WriterStoppedError | undefined;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const data: WriterData = { port: port2, answered: this.answered };
    this.worker = new Worker(workerFile(), { workerData: data, transferList: [port2] });
    this.worker.unref();
    this.port.on('message', (answer: WriterAnswer) => this.answer(answer));
    this.port.unref();
    this.worker.on('error', (err) => this.stop(err));
  }

  /** A new request's id. */
  newId(): number {
    return this.nextId++;
  }

  /** Sends a request; `done` runs once it is answered (at once, with the error, if the thread has stopped). */
  send(request: WriterRequest, done: CommitDone): void {
    if (this.stopped !== undefined) return done(this.stopped);
    if (this.pending.size === 0) this.port.ref(); // an answer awaited keeps the process alive
    this.pending.set(request.id, done);
    this.port.postMessage(request, request.writes === undefined ? [] : [request.writes.values.buffer as ArrayBuffer, request.writes.bytes.buffer as ArrayBuffer]);
  }

  /** Blocks until `settled()`, running the `done` of each answer received meanwhile (any store's). */
  drain(settled: () => boolean): void {
    const started = performance.now();
    while (!settled()) {
      const seen = Atomics.load(this.answered, 0);
      const received = receiveMessageOnPort(this.port);
      if (received !== undefined) {
        this.answer(received.message as WriterAnswer);
      } else if (Atomics.load(this.answered, 1) === 1) {
        this.stop(new Error('the thread exited'));
      } else if (Atomics.wait(this.answered, 0, seen, 100) === 'timed-out' && performance.now() - started > DRAIN_LIMIT_MS) {
        this.stop(new Error(`the metadata writer's thread has not answered for ${DRAIN_LIMIT_MS / 1000} s`));
      }
    }
  }

  private answer({ id, error }: WriterAnswer): void {
    const done = this.pending.get(id);
    if (done === undefined) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.port.unref();
    done(error === undefined ? undefined : Object.assign(new Error(error.message), { code: error.code }));
  }

  /** The thread died (a bug): every request outstanding fails, and so does every later one. */
  private stop(err: Error): void {
    this.stopped ??= new WriterStoppedError(err);
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.port.unref();
    for (const done of pending) done(this.stopped);
  }
}

let thread: WriterThread | undefined;

/**
 * Commits transactions recorded on the event loop (StatementLog) in a thread of its own, on a
 * second connection to the metadata database: SQLite's row and WAL writes of a page-out cycle
 * (0.5 ms for 16 pages, 7 ms for 1,000, measured on the event loop) no longer hold up requests.
 * Transactions run in the order sent. Each one's `done` runs on the event loop before anything
 * else writes the metadata: a transaction on the event loop's own connection calls drain() first,
 * which waits for every answer outstanding and runs its `done`, so the two connections never
 * write at once and each side sees the other's transactions in order.
 */
export class MetadataWriter {
  /** This store's requests not yet answered. */
  private readonly outstanding = new Set<number>();
  private closed = false;

  constructor(private readonly databasePath: string) {}

  /** Sends a transaction; `done` runs once it has committed or failed. */
  commit(writes: LoggedWrites, done: CommitDone): void {
    if (this.closed) return done(new WriterStoppedError(new Error('its store is closed')));
    this.send({ databasePath: this.databasePath, writes }, done);
  }

  /** Blocks until every transaction sent has been answered, running their `done`s. */
  drain(): void {
    if (this.outstanding.size > 0) thread!.drain(() => this.outstanding.size === 0);
  }

  /** Closes the thread's connection (if it opened one) after what is outstanding, and waits for all of it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (thread === undefined) return; // nothing was ever sent
    this.send({ databasePath: this.databasePath, close: true }, () => {});
    this.drain();
  }

  private send(request: Omit<WriterRequest, 'id'>, done: CommitDone): void {
    thread ??= new WriterThread();
    const id = thread.newId();
    this.outstanding.add(id);
    thread.send({ id, ...request }, (err) => {
      this.outstanding.delete(id);
      done(err);
    });
  }
}

/**
 * The thread's script: beside this module once compiled. Under the test runner this module is
 * TypeScript, which a worker cannot load: the compiled copy in dist/ (the tests' global setup
 * compiles first) runs instead.
 */
function workerFile(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return here.replace(/metadata-writer\.js$/, 'metadata-worker.js');
  return here.replace(/\/src\/meta\/metadata-writer\.ts$/, '/dist/src/meta/metadata-worker.js');
}

/**
 * The Node floor of the client file system rows: the least Node processes do to page through a
 * file system in a process of its own the way pagerd and map-file do, with no project code.
 *
 * - Page-in: client → server → file system → server → client, each hop a Unix socket. The server
 *   forwards each request to the file system as it comes, which reads the page with a synchronous
 *   pread (page-cache hits, as map-file's are); the server copies the answer into its reply.
 * - Page-out: the bench process, in the daemon's place, sends write requests (offset and length,
 *   no bytes: as pagerd names frames the file system has mapped) to the file system, which writes
 *   those bytes of its own image of the file (in memory, the size of the file: as a page cache's
 *   pages are, not in the CPU's caches) with a positional write and answers once an fdatasync
 *   begun after the write has ended (writes answered while one runs share the next).
 *
 * One 'data' handler parsing what came on each side, one write per batch of answers. What pagerd
 * spends above it is pagerd's; what it spends above raw I/O is the runtime's and the extra
 * processes'.
 *
 *   node node-file-pager-floor.js file SOCKET FILE
 *   node node-file-pager-floor.js server SOCKET FILE_SOCKET
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fstatSync, openSync, readSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';

const READ = 0;
const WRITE = 1;
/** A request: id, op, byte offset (f64), length. */
const REQUEST_HEAD = 20;
/** An answer's head: id, length; a read's bytes follow. */
const ANSWER_HEAD = 8;

/** Calls `each` with every whole message the socket delivers (its length from `sizeOf` its head), then `batchDone`. */
function onMessages(socket: Socket, head: number, sizeOf: (m: Buffer) => number, each: (message: Buffer) => void, batchDone: () => void): void {
  // The chunks of a message not yet whole, joined once it is (a large one comes in many chunks).
  let held: Buffer[] = [];
  let heldBytes = 0;
  let needed = 0;
  socket.on('data', (chunk: Buffer) => {
    held.push(chunk);
    heldBytes += chunk.length;
    if (heldBytes < needed) return;
    const buf = held.length === 1 ? held[0] : Buffer.concat(held, heldBytes);
    let at = 0;
    needed = 0;
    while (buf.length - at >= head) {
      const size = sizeOf(buf.subarray(at));
      if (buf.length - at < size) {
        needed = size;
        break;
      }
      each(buf.subarray(at, at + size));
      at += size;
    }
    held = at === buf.length ? [] : [buf.subarray(at)];
    heldBytes = buf.length - at;
    batchDone();
  });
}

const requestSize = (): number => REQUEST_HEAD;
const answerSize = (m: Buffer): number => ANSWER_HEAD + m.readUInt32LE(4);

function answerHead(id: number, length: number): Buffer {
  const head = Buffer.allocUnsafe(ANSWER_HEAD);
  head.writeUInt32LE(id, 0);
  head.writeUInt32LE(length, 4);
  return head;
}

/** fdatasyncs shared by the writes that finish while one runs. */
function groupedSyncs(file: FileHandle): () => Promise<void> {
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  return () => {
    if (running === undefined) {
      running = file.datasync().finally(() => (running = undefined));
      return running;
    }
    next ??= running.then(() => {
      next = undefined;
      running = file.datasync().finally(() => (running = undefined));
      return running;
    });
    return next;
  };
}

/** The file system: reads answered at once from the page cache; writes (of its own bytes) answered once durable. */
async function fileRole(socketPath: string, path: string): Promise<void> {
  const fd = openSync(path, 'r');
  const file = await open(path, 'r+');
  const sync = groupedSyncs(file);
  const image = Buffer.alloc(fstatSync(fd).size, 9);
  rmSync(socketPath, { force: true });
  createServer((socket) => {
    let out: Buffer[] = [];
    onMessages(
      socket,
      REQUEST_HEAD,
      requestSize,
      (m) => {
        const id = m.readUInt32LE(0);
        const offset = m.readDoubleLE(8);
        const length = m.readUInt32LE(16);
        if (m.readUInt32LE(4) === READ) {
          const answer = Buffer.allocUnsafe(ANSWER_HEAD + length);
          answer.writeUInt32LE(id, 0);
          answer.writeUInt32LE(length, 4);
          readSync(fd, answer, ANSWER_HEAD, length, offset);
          out.push(answer);
          return;
        }
        void file
          .write(image, offset, length, offset)
          .then(sync)
          .then(() => socket.write(answerHead(id, 0)));
      },
      () => {
        if (out.length > 0) socket.write(Buffer.concat(out));
        out = [];
      },
    );
  }).listen(socketPath, () => process.send?.('listening'));
}

/** The server: forwards each request to the file system, and its answer to the client. */
function serverRole(socketPath: string, fileSocket: string): void {
  const fs = connect(fileSocket);
  let client: Socket | undefined;
  let replies: Buffer[] = [];
  onMessages(
    fs,
    ANSWER_HEAD,
    answerSize,
    (m) => replies.push(Buffer.from(m)),
    () => {
      if (replies.length > 0) client?.write(Buffer.concat(replies));
      replies = [];
    },
  );
  rmSync(socketPath, { force: true });
  fs.once('connect', () =>
    createServer((socket) => {
      client = socket;
      onMessages(
        socket,
        REQUEST_HEAD,
        requestSize,
        (m) => fs.write(Buffer.from(m)), // at once: the file system starts while the rest are parsed
        () => {},
      );
    }).listen(socketPath, () => process.send?.('listening')),
  );
}

/** A requester's end of a socket: the requests of one turn sent together. */
export class FloorClient {
  private readonly waiting = new Map<number, (answer: Buffer) => void>();
  private nextId = 1;
  private queued: Buffer[] = [];

  private constructor(private readonly socket: Socket) {
    onMessages(
      socket,
      ANSWER_HEAD,
      answerSize,
      (m) => {
        const id = m.readUInt32LE(0);
        const wake = this.waiting.get(id)!;
        this.waiting.delete(id);
        wake(m.subarray(ANSWER_HEAD));
      },
      () => {},
    );
  }

  static connect(path: string): Promise<FloorClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path, () => resolve(new FloorClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Reads `into.length` bytes at `offset` into `into`. */
  async read(offset: number, into: Buffer): Promise<void> {
    (await this.request(READ, offset, into.length)).copy(into);
  }

  /** Has the file system write `length` bytes of its own at `offset`; resolves once they are durable. */
  async write(offset: number, length: number): Promise<void> {
    await this.request(WRITE, offset, length);
  }

  close(): void {
    this.socket.destroy();
  }

  private request(op: number, offset: number, length: number): Promise<Buffer> {
    const id = this.nextId++;
    const head = Buffer.allocUnsafe(REQUEST_HEAD);
    head.writeUInt32LE(id, 0);
    head.writeUInt32LE(op, 4);
    head.writeDoubleLE(offset, 8);
    head.writeUInt32LE(length, 16);
    if (this.queued.length === 0) {
      process.nextTick(() => {
        this.socket.write(Buffer.concat(this.queued));
        this.queued = [];
      });
    }
    this.queued.push(head);
    return new Promise((resolve) => this.waiting.set(id, resolve));
  }
}

/** Where the floor's requests go: `pageIn` through the server, `pageOut` straight to the file system. */
export interface FloorClients {
  pageIn: FloorClient;
  pageOut: FloorClient;
  /** The file system's and the server's processes. */
  pids: number[];
}

/** Starts the file system and server processes on `file` (sockets in `dir`), and runs `measure` with clients of both. */
export async function withNodeFilePagerFloor<T>(dir: string, file: string, measure: (floor: FloorClients) => Promise<T>): Promise<T> {
  const script = join(import.meta.dirname, 'node-file-pager-floor.js');
  const fileSocket = join(dir, 'floor-file.sock');
  const serverSocket = join(dir, 'floor-server.sock');
  const started: ChildProcess[] = [];
  const start = (args: string[]): Promise<void> => {
    const child = fork(script, args, { stdio: 'ignore' });
    started.push(child);
    return new Promise((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`bench/node-file-pager-floor.js ${args[0]} exited with ${code} before it listened`)));
    });
  };
  try {
    await start(['file', fileSocket, file]);
    await start(['server', serverSocket, fileSocket]);
    const pageIn = await FloorClient.connect(serverSocket);
    const pageOut = await FloorClient.connect(fileSocket);
    try {
      return await measure({ pageIn, pageOut, pids: started.map((p) => p.pid!) });
    } finally {
      pageIn.close();
      pageOut.close();
    }
  } finally {
    for (const child of started) child.kill();
  }
}

if (process.argv[1] === import.meta.filename) {
  const [role, socketPath, target] = process.argv.slice(2);
  if (role === 'file') void fileRole(socketPath, target);
  else serverRole(socketPath, target);
}

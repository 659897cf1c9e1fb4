import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { SocketInUseError } from './start-refusals.js';

/** Connections the kernel queues before accept (capped by net.core.somaxconn, 4096 by default). */
const LISTEN_BACKLOG = 4096;

/** File descriptor of the first socket systemd passes (sd_listen_fds). */
const SD_LISTEN_FDS_START = 3;

/**
 * The file descriptor under a connected socket, for the addon's calls Node lacks (peer
 * credentials, passing descriptors). `_handle.fd` is undocumented: checked, and it throws if absent.
 */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the socket has no file descriptor');
  return fd;
}

/**
 * The listening sockets systemd handed this process (sd_listen_fds), by their FileDescriptorName:
 * `metrics` is pagerd-metrics.socket's; the first other one is the client socket.
 */
export function inheritedSockets(env: NodeJS.ProcessEnv = process.env): { native?: number; metrics?: number } {
  const count = Number(env.LISTEN_FDS);
  if (!Number.isInteger(count) || count < 1) return {};
  if (env.LISTEN_PID !== undefined && Number(env.LISTEN_PID) !== process.pid) return {};
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  const found: { native?: number; metrics?: number } = {};
  for (let i = 0; i < count; i++) {
    if (names[i] === 'metrics') found.metrics ??= SD_LISTEN_FDS_START + i;
    else found.native ??= SD_LISTEN_FDS_START + i;
  }
  return found;
}

/** True when systemd socket activation handed this process its client socket. */
export function socketActivated(env: NodeJS.ProcessEnv = process.env): boolean {
  return inheritedSockets(env).native !== undefined;
}

/** True if something answers on the Unix socket at `path`. */
export function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/**
 * Listens for clients: on the inherited socket when systemd activated us (and `inherit`: the one
 * socket systemd passes is the native one), else on `path` (its
 * directory made 0750, the socket chmod'ed to `mode`). A stale socket file from a crashed daemon
 * is removed; a live one means another daemon, and is refused.
 */
export async function listen(path: string, mode: number, onConnection: (socket: Socket) => void, { inherit = true } = {}): Promise<Server> {
  // No server.maxConnections: Node would close connections past it without a word. The daemon
  // counts them itself and tells a refused one why.
  const server = createServer({ pauseOnConnect: false }, onConnection);
  const inherited = inheritedSockets().native;
  if (inherit && inherited !== undefined) {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ fd: inherited }, resolve));
    return server;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  if (existsSync(path)) {
    if (await answers(path)) throw new SocketInUseError(path);
    unlinkSync(path);
  }
  // A deep backlog: a burst of connects waits to be accepted (and admitted or refused with a
  // reason) rather than failing with EAGAIN at the kernel.
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ path, backlog: LISTEN_BACKLOG }, resolve));
  chmodSync(path, mode);
  return server;
}

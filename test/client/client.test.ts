import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, UIO_READ } from '../../src/client/index.js';
import { encodeReplyFrame, encodeWelcome } from '../../src/protocol/codec.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { storeDir } from '../support/store-files.js';

/**
 * A fake daemon: a real Unix socket whose side of the protocol each test writes by hand, to send
 * the client library what a real daemon never would.
 */
async function fakeDaemon(onConnection: (socket: Socket) => void): Promise<{ path: string; server: Server }> {
  const path = join(storeDir('pagerd-fake-'), 'fake.sock');
  const server = createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  servers.push(server);
  return { path, server };
}

/** Answers the hello with a welcome, then hands each later chunk to `onRequest`. */
function greeting(onRequest: (socket: Socket, chunk: Buffer) => void) {
  return (socket: Socket): void => {
    socket.on('error', () => undefined);
    let greeted = false;
    socket.on('data', (chunk) => {
      if (!greeted) {
        greeted = true;
        socket.write(encodeFrame(encodeWelcome(4096, 1 << 21)));
        return;
      }
      onRequest(socket, chunk);
    });
  };
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

let uncaught = 0;
process.on('uncaughtException', () => uncaught++);

describe('the client library against a daemon that misbehaves', () => {
  for (const [what, garbage] of [
    ['a frame that is no message', encodeFrame(Uint8Array.from([9, 9, 9]))],
    ['a truncated reply', encodeFrame(encodeReplyFrame({ id: 1, results: [5] }).subarray(4, 9))],
    ['a welcome where a reply belongs', encodeFrame(encodeWelcome(4096, 1 << 21))],
    ['a frame longer than any reply', Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3])],
  ] as const) {
    it(`${what}: every pending call rejects with EPROTO protocol-error, nothing is thrown, later calls fail too`, async () => {
      const { path } = await fakeDaemon(greeting((socket) => socket.write(garbage)));
      const c = await connect({ socket: path });
      const calls = [c.vmQpages(1), c.vmsIowait(1), c.vmMove(1, 0, 10, UIO_READ, { iov: [new Uint8Array(10)], offset: 0, resid: 10, segflg: 0 })];
      for (const call of calls) await expect(call).rejects.toMatchObject({ code: 'EPROTO', errno: 71, reason: 'protocol-error' });
      await expect(c.vmQpages(1)).rejects.toMatchObject({ code: 'EPROTO', reason: 'protocol-error' });
      expect(uncaught).toBe(0);
    });
  }

  it('a reply to a request never sent is a protocol error', async () => {
    const { path } = await fakeDaemon(greeting((socket) => socket.write(encodeReplyFrame({ id: 4242, results: [] }))));
    const c = await connect({ socket: path });
    await expect(c.vmQpages(1)).rejects.toMatchObject({ code: 'EPROTO', reason: 'protocol-error' });
  });

  it('a connection that closes rejects its pending calls at once with ECONNRESET connection-closed', async () => {
    const { path } = await fakeDaemon(greeting((socket) => socket.destroy()));
    const c = await connect({ socket: path });
    const started = Date.now();
    await expect(c.vmsIowait(1)).rejects.toMatchObject({ code: 'ECONNRESET', errno: 104, reason: 'connection-closed' });
    expect(Date.now() - started).toBeLessThan(5000);
    await expect(c.vmQpages(1)).rejects.toMatchObject({ code: 'ECONNRESET', reason: 'connection-closed' });
  });

  it('a server that never answers the hello: connect rejects with ETIMEDOUT after connectTimeoutMs', async () => {
    const { path } = await fakeDaemon((socket) => socket.on('error', () => undefined));
    await expect(connect({ socket: path, connectTimeoutMs: 300 })).rejects.toMatchObject({ code: 'ETIMEDOUT', errno: 110, reason: 'connect-timeout' });
  });

  it('a server that closes during the handshake: connect rejects with ECONNRESET', async () => {
    const { path } = await fakeDaemon((socket) => socket.once('data', () => socket.destroy()));
    await expect(connect({ socket: path })).rejects.toMatchObject({ code: 'ECONNRESET', reason: 'connection-closed' });
  });

  it('a server that accepts and closes at once: connect rejects with ECONNRESET; a socket nobody listens on, with Node’s ENOENT', async () => {
    const { path } = await fakeDaemon((socket) => socket.destroy());
    await expect(connect({ socket: path })).rejects.toMatchObject({ code: 'ECONNRESET', reason: 'connection-closed' });
    await expect(connect({ socket: `${path}.none` })).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a connectTimeoutMs that is not a positive number: EINVAL bad-argument', async () => {
    for (const bad of [0, -1, Number.NaN]) await expect(connect({ socket: '/nonexistent', connectTimeoutMs: bad })).rejects.toMatchObject({ code: 'EINVAL', reason: 'bad-argument' });
  });

  it('a server that answers the hello with garbage: connect rejects with EPROTO', async () => {
    const { path } = await fakeDaemon((socket) => socket.once('data', () => socket.write(encodeFrame(Uint8Array.from([7])))));
    await expect(connect({ socket: path })).rejects.toMatchObject({ code: 'EPROTO', reason: 'protocol-error' });
  });
});

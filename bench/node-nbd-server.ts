/**
 * The Node floor of the NBD rows: the least an NBD server on Node does for fio's nbd engine, in its
 * own process and with no project code (its few lines of handshake are its own, not src/nbd's).
 * It serves a 256 MiB Buffer (no page cache, no checks, no metrics) with simple replies, one
 * 'data' handler parsing what came and one write per batch of replies. What pagerd spends above
 * it is pagerd's; what it spends above nbdkit is the runtime's.
 *
 *   node node-nbd-server.js SOCKET
 */
import { rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';

const SIZE = 256 * 1024 * 1024;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_ERR_UNSUP = 0x80000001;
const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;

const disk = Buffer.alloc(SIZE, 7);
const socketPath = process.argv[2];
rmSync(socketPath, { force: true });

function optionReply(socket: Socket, option: number, type: number, data = Buffer.alloc(0)): void {
  const head = Buffer.alloc(20);
  head.writeBigUInt64BE(OPT_REPLY_MAGIC, 0);
  head.writeUInt32BE(option, 8);
  head.writeUInt32BE(type, 12);
  head.writeUInt32BE(data.length, 16);
  socket.write(Buffer.concat([head, data]));
}

/** Takes one option from `buf`; answers NBD_OPT_GO with the export's size, anything else unsupported. */
function option(socket: Socket, buf: Buffer): { used: number; go: boolean } | undefined {
  if (buf.length < 16 || buf.length < 16 + buf.readUInt32BE(12)) return undefined;
  const opt = buf.readUInt32BE(8);
  const used = 16 + buf.readUInt32BE(12);
  if (opt !== OPT_GO) {
    optionReply(socket, opt, REP_ERR_UNSUP);
    return { used, go: false };
  }
  const info = Buffer.alloc(12); // NBD_INFO_EXPORT: size, transmission flags (HAS_FLAGS)
  info.writeBigUInt64BE(BigInt(SIZE), 2);
  info.writeUInt16BE(1, 10);
  optionReply(socket, opt, REP_INFO, info);
  optionReply(socket, opt, REP_ACK);
  return { used, go: true };
}

createServer((socket) => {
  let buf: Buffer = Buffer.alloc(0);
  let phase: 'client-flags' | 'options' | 'transmission' = 'client-flags';
  socket.write(Buffer.from('NBDMAGICIHAVEOPT\x00\x03', 'latin1')); // FIXED_NEWSTYLE | NO_ZEROES
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const replies: Buffer[] = [];
    for (;;) {
      if (phase === 'client-flags') {
        if (buf.length < 4) break;
        buf = buf.subarray(4);
        phase = 'options';
      } else if (phase === 'options') {
        const taken = option(socket, buf);
        if (taken === undefined) break;
        buf = buf.subarray(taken.used);
        if (taken.go) phase = 'transmission';
      } else {
        if (buf.length < 28) break;
        const type = buf.readUInt16BE(6);
        const offset = buf.readUInt32BE(16) * 2 ** 32 + buf.readUInt32BE(20);
        const length = buf.readUInt32BE(24);
        if (type === CMD_WRITE && buf.length < 28 + length) break;
        if (type === CMD_DISC) {
          socket.end(Buffer.concat(replies)); // the replies before it first
          return;
        }
        const inRange = offset + length <= SIZE;
        const reply = Buffer.allocUnsafe(type === CMD_READ && inRange ? 16 + length : 16);
        reply.writeUInt32BE(0x67446698, 0);
        reply.writeUInt32BE(inRange && type <= CMD_WRITE ? 0 : 22, 4);
        buf.copy(reply, 8, 8, 16);
        if (inRange && type === CMD_READ) disk.copy(reply, 16, offset, offset + length);
        if (inRange && type === CMD_WRITE) buf.copy(disk, offset, 28, 28 + length);
        buf = buf.subarray(28 + (type === CMD_WRITE ? length : 0));
        replies.push(reply);
      }
    }
    if (replies.length > 0) socket.write(replies.length === 1 ? replies[0] : Buffer.concat(replies));
  });
  socket.on('error', () => undefined);
}).listen(socketPath, () => process.send?.('ready'));

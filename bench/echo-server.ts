/**
 * The raw baseline peer: a Unix-socket server in its own process that answers each length-prefixed
 * frame with a frame of the size the request names (its first 4 bytes), as pagerd answers a move.
 *
 *   node echo-server.js SOCKET
 */
import { createServer } from 'node:net';
import { FrameDecoder, encodeFrame } from '../src/protocol/frame.js';

const socketPath = process.argv[2];
const replies = new Map<number, Buffer>();
createServer((socket) => {
  const decoder = new FrameDecoder(64 << 20);
  socket.on('data', (chunk: Buffer) => {
    for (const frame of decoder.push(chunk)) {
      const size = frame.readUInt32LE(0);
      let reply = replies.get(size);
      if (reply === undefined) {
        reply = encodeFrame(Buffer.alloc(size, 7));
        replies.set(size, reply);
      }
      socket.write(reply);
    }
  });
  socket.on('error', () => undefined);
}).listen(socketPath, () => process.send?.('ready'));

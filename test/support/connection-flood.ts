/**
 * Run as another uid (setpriv) by the fairness tests: opens many connections to the daemon and
 * reports on one JSON line how each fared, then holds them open until its stdin closes.
 *
 *   node connection-flood.js SOCKET half|greeted COUNT
 *
 * half: each connection sends half a hello and stops there. greeted: each completes the
 * handshake through the client library and then sits idle.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect, type PagerClient } from '../../src/client/index.js';
import { decodeReply } from '../../src/protocol/codec.js';
import { FrameDecoder } from '../../src/protocol/frame.js';

const [socketPath, mode, countArg] = process.argv.slice(2);
const count = Number(countArg);
const outcomes: Record<string, number> = {};
const count1 = (what: string): void => {
  outcomes[what] = (outcomes[what] ?? 0) + 1;
};

/** Sends half a hello; answers once the daemon has said something or a moment has passed. */
function halfOpen(): Promise<Socket> {
  return new Promise((resolve) => {
    const s = netConnect(socketPath);
    const decoder = new FrameDecoder(1 << 20);
    let told = false;
    s.on('error', () => undefined);
    s.on('data', (chunk) => {
      for (const frame of decoder.push(chunk)) {
        told = true;
        const reply = decodeReply(frame);
        count1(`${reply.error?.code} ${reply.error?.reason}`);
      }
    });
    s.on('close', () => {
      if (!told) count1('closed without a word');
    });
    s.on('connect', () => {
      s.write(Buffer.from([0, 0])); // two bytes of a frame's four-byte length
      setTimeout(() => resolve(s), 300);
    });
  });
}

async function greeted(): Promise<PagerClient | undefined> {
  try {
    return await connect({ socket: socketPath });
  } catch (err) {
    const e = err as { code?: string; reason?: string };
    count1(`${e.code} ${e.reason}`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const held: unknown[] = [];
  if (mode === 'half') held.push(...(await Promise.all(Array.from({ length: count }, halfOpen))));
  else held.push(...(await Promise.all(Array.from({ length: count }, greeted))).filter((c) => c !== undefined));
  const open = mode === 'half' ? (held as Socket[]).filter((s) => !s.destroyed && !s.readableEnded).length : held.length;
  console.log(JSON.stringify({ open, outcomes }));
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

void main();

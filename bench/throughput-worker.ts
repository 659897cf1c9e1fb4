/**
 * One client process of the multi-process throughput benchmark. Reports ops/s to its parent.
 *
 *   node throughput-worker.js pagerd|raw SOCKET read|write WINDOW OPS
 */
import { UIO_READ, UIO_WRITE, V_WORKING, connect } from '../src/client/index.js';
import { RawClient } from './raw-client.js';
import { pipelined } from './throughput.js';

const PAGE = 4096;
const [mode, socket, rw, windowArg, opsArg] = process.argv.slice(2);
const window = Number(windowArg);
const ops = Number(opsArg);
/** A fresh process runs cold code: both kinds of worker warm up the same way before they are timed. */
const WARM_UP_OPS = 2000;

async function main(): Promise<number> {
  if (mode === 'raw') {
    const raw = await RawClient.open(socket);
    const request = (): Promise<unknown> => (rw === 'read' ? raw.request(64, PAGE) : raw.request(PAGE + 64, 16));
    await pipelined(WARM_UP_OPS, window, request);
    process.send!('ready');
    await new Promise((r) => process.once('message', r)); // start together
    const rate = await pipelined(ops, window, request);
    raw.close();
    return rate;
  }
  const c = await connect({ socket, sharedFrames: false }); // the socket path, against the raw echo
  const vmid = await c.vmsCreate(V_WORKING, 256 * PAGE);
  const fill = new Uint8Array(256 * PAGE).fill(1);
  await c.vmMove(vmid, 0, fill.length, UIO_WRITE, { iov: [fill], offset: 0, resid: fill.length, segflg: 0 });
  const buffers = Array.from({ length: window }, () => new Uint8Array(PAGE));
  const request = (i: number): Promise<unknown> =>
    c.vmMove(vmid, (i % 256) * PAGE, PAGE, rw === 'read' ? UIO_READ : UIO_WRITE, { iov: [buffers[i % window]], offset: 0, resid: PAGE, segflg: 0 });
  await pipelined(WARM_UP_OPS, window, request);
  process.send!('ready');
  await new Promise((r) => process.once('message', r));
  const rate = await pipelined(ops, window, request);
  await c.vmsDelete(vmid);
  await c.close();
  return rate;
}

void main().then((rate) => {
  process.send!({ rate });
  process.disconnect();
});

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING } from '../../src/client/index.js';
import { encodeRequest, type Value } from '../../src/protocol/codec.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { OPERATIONS, type OperationName } from '../../src/protocol/operations.js';
import { startDaemon } from '../support/daemon.js';
import { RawConnection } from '../support/raw-connection.js';
import { mulberry32 } from '../support/random.js';
import { rssBytes } from '../support/rss.js';

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 50_000);

const NUMBERS = [0, 1, -1, 0.5, -0.25, 4096, 4097, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1e300, NaN, Infinity, -Infinity, 0x1f, 0x10000000];
// Operations the fuzzer leaves out of its valid seeds: verify scrubs (slow), and creating segments
// would let it fill the daemon with them. Mutations still reach every code.
const SEEDS = (Object.keys(OPERATIONS) as OperationName[]).filter((op) => op !== 'verify' && op !== 'vmsCreate');

/** A request frame: valid in shape, then (usually) broken in one of many ways. Answers the frame and its id. */
function fuzzFrame(random: () => number, id: number): { bytes: Uint8Array; closes: boolean } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const op = pick(SEEDS);
  const args: Value[] = OPERATIONS[op].args.map((kind) =>
    kind === 'n' ? (random() < 0.7 ? Math.floor(random() * 64) : pick(NUMBERS)) : kind === 's' ? pick(['read', 'write', '', 'x'.repeat(300)]) : new Uint8Array(Math.floor(random() * 64)),
  );
  const payload = Buffer.from(encodeRequest({ id, op, args }));
  const mutation = random();
  if (mutation < 0.25) return { bytes: encodeFrame(payload), closes: false }; // valid (arguments random)
  if (mutation < 0.45) {
    for (let i = 0; i < 1 + Math.floor(random() * 4); i++) {
      const at = 5 + Math.floor(random() * Math.max(1, payload.length - 5)); // keep the id readable
      if (at < payload.length) payload[at] ^= 1 << Math.floor(random() * 8);
    }
    return { bytes: encodeFrame(payload), closes: false };
  }
  if (mutation < 0.6) return { bytes: encodeFrame(payload.subarray(0, 5 + Math.floor(random() * Math.max(1, payload.length - 5)))), closes: false };
  if (mutation < 0.7) return { bytes: encodeFrame(Buffer.concat([payload, Buffer.from([1, 2, 3])])), closes: false };
  if (mutation < 0.8) {
    payload.writeUInt16LE(100 + Math.floor(random() * 60000), 5); // unknown operation
    return { bytes: encodeFrame(payload), closes: false };
  }
  if (mutation < 0.88) {
    payload[9] = Math.floor(random() * 256); // wrong argument count
    return { bytes: encodeFrame(payload), closes: false };
  }
  if (mutation < 0.93) return { bytes: encodeFrame(Buffer.from([3, ...Buffer.alloc(Math.floor(random() * 4))])), closes: true }; // no readable id
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(0x7fffffff + Math.floor(random() * 0x7fffffff), 0);
  return { bytes: huge, closes: true }; // a length past the maximum
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}


describe('protocol fuzzing against the running daemon', () => {
  it(`answers or closes on each of ${FRAMES} random and mutated frames, stays up, and keeps serving a well-behaved client`, async () => {
    const daemon = await startDaemon({ memory: '16MiB' });
    const pid = daemon.proc.pid!;
    const good = await daemon.client({ sharedFrames: false }); // no side connection for shared frames open while fds are counted
    // The fuzzer runs as the same uid and may legitimately delete or release what it names: keep
    // the well-behaved client's segment above the small vmids the fuzzer picks from.
    for (let i = 0; i < 70; i++) await good.vmsDelete(await good.vmsCreate(V_WORKING, 4096));
    const vmid = await good.vmsCreate(V_WORKING, 1 << 20);
    const goodLoop = async (round: number): Promise<void> => {
      const data = new Uint8Array(4096).fill(round & 0xff);
      await good.vmMove(vmid, (round % 256) * 4096, 4096, UIO_WRITE, { iov: [data], offset: 0, resid: 4096, segflg: 0 });
      const back = new Uint8Array(4096);
      await good.vmMove(vmid, (round % 256) * 4096, 4096, UIO_READ, { iov: [back], offset: 0, resid: 4096, segflg: 0 });
      if (!back.every((b) => b === (round & 0xff))) throw new Error(`the well-behaved client read wrong bytes in round ${round}`);
    };
    await goodLoop(0);
    // A page-out before the count: the metadata WAL's sync descriptor opens at the first one and
    // stays open (the fuzzer may start page-outs: a backup pages out every modified page).
    await good.vmWritep(vmid, 0, 1);
    await good.vmsIowait(vmid);
    const fdsBefore = openFds(pid);
    const rssBefore = rssBytes(pid);

    const random = mulberry32(20261122);
    const unanswered: string[] = [];
    let sent = 0;
    let closes = 0;
    const worker = async (): Promise<void> => {
      let conn = await RawConnection.open(daemon.socket);
      while (sent < FRAMES) {
        const id = ++sent;
        const { bytes, closes: expectClose } = fuzzFrame(random, id);
        const before = conn.replies.length;
        conn.send(bytes);
        const answered = await conn.until(() => conn.closed || conn.replies.length > before, 10_000);
        if (!answered) unanswered.push(`frame ${id}: no answer and no close`);
        if (conn.closed || expectClose) {
          if (!conn.closed) conn.close();
          closes++;
          conn = await RawConnection.open(daemon.socket);
        }
        if (id % 5000 === 0) await goodLoop(id / 5000);
      }
      conn.close();
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    await goodLoop(9999);
    await new Promise((r) => setTimeout(r, 500)); // let the daemon see the last closes

    expect(unanswered.slice(0, 5)).toEqual([]);
    expect(daemon.proc.exitCode).toBeNull();
    expect(closes).toBeGreaterThan(0);
    expect(openFds(pid)).toBe(fdsBefore);
    // V8 grows its heap lazily: growth measured 45–97 MiB over the run with nothing retained (the
    // most in a full suite on a busy machine). A daemon that kept its ~5,900 closed connections
    // (each with a 64 KiB read buffer, ~370 MiB) would not fit.
    expect(rssBytes(pid)).toBeLessThan(rssBefore + 160 * 1024 * 1024);
    expect(daemon.output()).not.toMatch(/unhandled rejection|request failed unexpectedly/);
    await good.close();
    expect(await daemon.stop()).toBe(0);
  }, 300_000);
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_CLIENT, V_WORKING } from '../../src/constants.js';
import { PAGE, testEngine, uioOf, type TestEngine } from '../support/engine.js';
import type { MemoryStore } from '../support/memory-store.js';
import { mulberry32 } from '../support/random.js';

/**
 * Model-based test: random sequences of services run against the engine and against a reference
 * model that is just an array of bytes per segment. Page-outs complete in random order (a pump
 * settles pending store batches at random while the services run). After every step the engine
 * must agree with the model; fast-check prints the seed and the shrunk sequence on failure.
 */

const PAGES = 6;
const SEGS = 2;

type Op =
  | { kind: 'write'; seg: number; offset: number; len: number; byte: number }
  | { kind: 'read'; seg: number; offset: number; len: number }
  | { kind: 'vmWrite'; seg: number; first: number; count: number; force: boolean }
  | { kind: 'writep' | 'flushp' | 'readp' | 'invalidatep' | 'releasep'; seg: number; first: number; count: number }
  | { kind: 'vmRelease'; seg: number; offset: number; len: number }
  | { kind: 'iowait'; seg: number }
  | { kind: 'makep'; page: number }
  | { kind: 'settle'; ticks: number };

const seg = fc.integer({ min: 0, max: SEGS - 1 });
const byteRange = fc.integer({ min: 0, max: PAGES * PAGE - 1 }).chain((offset) =>
  fc.integer({ min: 1, max: Math.min(2 * PAGE + 7, PAGES * PAGE - offset) }).map((len) => ({ offset, len })),
);
const pageRange = fc.integer({ min: 0, max: PAGES - 1 }).chain((first) => fc.integer({ min: 1, max: PAGES - first }).map((count) => ({ first, count })));

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ seg, r: byteRange, byte: fc.integer({ min: 1, max: 255 }) }).map(({ seg, r, byte }) => ({ kind: 'write' as const, seg, ...r, byte })) },
  { weight: 4, arbitrary: fc.record({ seg, r: byteRange }).map(({ seg, r }) => ({ kind: 'read' as const, seg, ...r })) },
  { weight: 2, arbitrary: fc.record({ seg, r: pageRange, force: fc.boolean() }).map(({ seg, r, force }) => ({ kind: 'vmWrite' as const, seg, ...r, force })) },
  {
    weight: 4,
    arbitrary: fc
      .record({ kind: fc.constantFrom('writep', 'flushp', 'readp', 'invalidatep', 'releasep'), seg, r: pageRange })
      .map(({ kind, seg, r }) => ({ kind: kind as 'writep', seg, ...r })),
  },
  { weight: 1, arbitrary: fc.record({ seg, r: byteRange }).map(({ seg, r }) => ({ kind: 'vmRelease' as const, seg, ...r })) },
  { weight: 2, arbitrary: seg.map((seg) => ({ kind: 'iowait' as const, seg })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: PAGES - 1 }).map((page) => ({ kind: 'makep' as const, page })) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 6 }).map((ticks) => ({ kind: 'settle' as const, ticks })) },
);

/** Settles pending store batches in random order while services run. */
function startPump(store: MemoryStore, random: () => number): () => void {
  let stopped = false;
  const step = (): void => {
    if (stopped) return;
    const pending = store.pendingWrites;
    if (pending.length > 0 && random() < 0.6) {
      const batch = pending[Math.floor(random() * pending.length)];
      if (!batch.captured && random() < 0.5) store.capture(batch);
      else store.settleWrite(batch);
    }
    setImmediate(step);
  };
  setImmediate(step);
  return () => {
    stopped = true;
  };
}

/** Byte equality that stays fast on large arrays and names the first difference. */
function expectBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected)) return;
  const at = actual.findIndex((b, i) => b !== expected[i]);
  expect.fail(`${what}: byte ${at} is ${actual[at]}, model says ${expected[at]}`);
}

class Model {
  readonly bytes = Array.from({ length: SEGS }, () => new Uint8Array(PAGES * PAGE));
  /** Per page: bumped on every change of its contents. */
  readonly version = Array.from({ length: SEGS }, () => new Array<number>(PAGES).fill(0));
  /** Per page: the version a forced page-out covered, if any since its last change. */
  readonly forcedAt = Array.from({ length: SEGS }, () => new Array<number>(PAGES).fill(-1));

  touch(seg: number, first: number, end: number): void {
    for (let p = first; p < end; p++) this.version[seg][p]++;
  }

  page(seg: number, p: number): Uint8Array {
    return this.bytes[seg].subarray(p * PAGE, (p + 1) * PAGE);
  }
}

async function run(e: TestEngine, vmids: number[], vaddrs: number[], ops: Op[], model: Model): Promise<void> {
  const { svc, ctx, store } = e;
  for (const o of ops) {
    switch (o.kind) {
      case 'write': {
        const data = new Uint8Array(o.len).fill(o.byte);
        await svc.vmMove(ctx, vmids[o.seg], o.offset, o.len, UIO_WRITE, uioOf(data));
        model.bytes[o.seg].set(data, o.offset);
        model.touch(o.seg, Math.floor(o.offset / PAGE), Math.ceil((o.offset + o.len) / PAGE));
        break;
      }
      case 'read': {
        const buf = new Uint8Array(o.len);
        await svc.vmMove(ctx, vmids[o.seg], o.offset, o.len, UIO_READ, uioOf(buf));
        expectBytes(buf, model.bytes[o.seg].subarray(o.offset, o.offset + o.len), `read ${o.seg}@${o.offset}+${o.len}`);
        break;
      }
      case 'vmWrite':
        await svc.vmWrite(ctx, vaddrs[o.seg] + o.first * PAGE, o.count * PAGE, o.force ? 1 : 0);
        if (o.force) for (let p = o.first; p < o.first + o.count; p++) model.forcedAt[o.seg][p] = model.version[o.seg][p];
        break;
      case 'writep':
      case 'flushp':
        await svc[o.kind === 'writep' ? 'vmWritep' : 'vmFlushp'](ctx, vmids[o.seg], o.first, o.count);
        for (let p = o.first; p < o.first + o.count; p++) model.forcedAt[o.seg][p] = model.version[o.seg][p];
        break;
      case 'readp':
        await svc.vmReadp(ctx, vmids[o.seg], o.first, o.count, 0);
        break;
      case 'invalidatep':
        await svc.vmInvalidatep(ctx, vmids[o.seg], o.first, o.count);
        for (let p = o.first; p < o.first + o.count; p++) model.page(o.seg, p).set(store.durable(vmids[o.seg], p));
        model.touch(o.seg, o.first, o.first + o.count);
        break;
      case 'releasep':
        await svc.vmReleasep(ctx, vmids[o.seg], o.first, o.count);
        model.bytes[o.seg].fill(0, o.first * PAGE, (o.first + o.count) * PAGE);
        model.touch(o.seg, o.first, o.first + o.count);
        break;
      case 'vmRelease': {
        await svc.vmRelease(ctx, vaddrs[o.seg] + o.offset, o.len);
        const first = Math.floor(o.offset / PAGE);
        const end = Math.ceil((o.offset + o.len) / PAGE);
        model.bytes[o.seg].fill(0, first * PAGE, end * PAGE);
        model.touch(o.seg, first, end);
        break;
      }
      case 'iowait':
        await svc.vmsIowait(ctx, vmids[o.seg]);
        // Every page a forced page-out covered since its last change is durable now.
        for (let p = 0; p < PAGES; p++) {
          if (model.forcedAt[o.seg][p] === model.version[o.seg][p]) {
            expectBytes(store.durable(vmids[o.seg], p), model.page(o.seg, p), `durable ${o.seg}/${p} after iowait`);
          }
        }
        break;
      case 'makep': {
        const resident = e.vmm.segments.get(vmids[1])!.pages.get(o.page) >= 0;
        await svc.vmMakep(ctx, vmids[1], o.page);
        if (!resident) {
          model.page(1, o.page).fill(0);
          model.touch(1, o.page, o.page + 1);
        }
        break;
      }
      case 'settle':
        for (let i = 0; i < o.ticks; i++) await new Promise((r) => setImmediate(r));
        break;
    }
    expect(store.reserved, `reservations after ${o.kind}`).toBe(e.vmm.modifiedFrameCount());
  }
}

describe('engine against a reference model', () => {
  it('agrees on every read and on what is durable, with page-outs completing in random order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), fc.integer(), async (ops, pumpSeed) => {
        const e = await testEngine({ frames: 5, minFree: 1, maxFree: 3, allocTimeoutMs: 10_000, writebackMinAgeMs: 0 });
        e.store.writeMode = 'manual';
        const vmids = [await e.svc.vmsCreate(e.ctx, V_WORKING, PAGES * PAGE), await e.svc.vmsCreate(e.ctx, V_CLIENT, PAGES * PAGE)];
        const vaddrs = vmids.map((v) => e.svc.vmAtt(e.ctx, v, 0));
        const model = new Model();
        const stop = startPump(e.store, mulberry32(pumpSeed));
        try {
          await run(e, vmids, vaddrs, ops, model);
          // Finally everything is written out and read back, from memory and from the store.
          for (let s = 0; s < SEGS; s++) {
            await e.svc.vmWritep(e.ctx, vmids[s], 0, PAGES);
            await e.svc.vmsIowait(e.ctx, vmids[s]);
            for (let p = 0; p < PAGES; p++) expectBytes(e.store.durable(vmids[s], p), model.page(s, p), `final durable ${s}/${p}`);
            const all = new Uint8Array(PAGES * PAGE);
            await e.svc.vmMove(e.ctx, vmids[s], 0, all.length, UIO_READ, uioOf(all));
            expectBytes(all, model.bytes[s], `final read of segment ${s}`);
          }
        } finally {
          stop();
        }
      }),
      { numRuns: Number(process.env.MODEL_RUNS ?? 1000) },
    );
  }, 300_000);
});

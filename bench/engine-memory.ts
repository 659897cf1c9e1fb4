/**
 * Engine bookkeeping memory, measured (issue: the VMM engine).
 *
 *   npm run bench:memory
 *
 * 1. Bytes of engine bookkeeping per frame: heap and shared memory the engine holds for N frames,
 *    less the frames' own bytes, divided by N (with every frame resident, so page tables count).
 * 2. Bytes per mapped non-resident page: engine memory after M pages were written, paged out and
 *    evicted, divided by M (the store keeps the page map; the engine should keep nothing).
 * 3. Heap allocated per vm_move of a resident page, for moves of 64 B, 1 KiB and 4 KiB: it must
 *    not grow with the bytes moved (run with a large young generation so no scavenge interferes).
 *
 * The store here is a null store (writes vanish, reads are zeros): it measures the engine alone.
 */
import { UIO_READ, UIO_WRITE, V_WORKING } from '../src/constants.js';
import type { SegmentRecord } from '../src/vm/segment.js';
import { VmServices } from '../src/vm/services.js';
import type { BackingStore, PageWrite, WriteTicket } from '../src/vm/store.js';
import { Vmm } from '../src/vm/vmm.js';

const PAGE = 4096;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:memory does)');

class NullStore implements BackingStore {
  readonly pageSize = PAGE;
  readonly failed = false;
  readonly checking = undefined;
  private next = 1;
  async loadSegments(): Promise<SegmentRecord[]> {
    return [];
  }
  async createSegment(): Promise<number> {
    return this.next++;
  }
  deleteSegment(): void {}
  async readPage(_vmid: number, _pno: number, into: Uint8Array): Promise<void> {
    into.fill(0);
  }
  readPageNow(_vmid: number, _pno: number, into: Uint8Array): boolean {
    into.fill(0);
    return true;
  }
  writePages(_pages: readonly PageWrite[]): WriteTicket {
    const done = Promise.resolve();
    return { captured: done, complete: done };
  }
  releasePages(): void {}
  reserveSlots(): boolean {
    return true;
  }
  unreserveSlots(): void {}
}

function used(): number {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.external + m.arrayBuffers;
}

async function engine(frames: number) {
  const vmm = await Vmm.open(new NullStore(), {
    frames,
    minFree: 16,
    maxFree: 64,
    writebackMinAgeMs: 0,
    allocTimeoutMs: 10_000,
    pageoutBatchPages: 256,
  });
  const svc = new VmServices(vmm);
  const ctx = svc.createContext({ uid: 0, gid: 0, pid: process.pid });
  return { vmm, svc, ctx };
}

const settle = () => new Promise((r) => setImmediate(r));

async function perFrame(frames: number): Promise<number> {
  const before = used();
  const { vmm, svc, ctx } = await engine(frames);
  const vmid = await svc.vmsCreate(ctx, V_WORKING, frames * PAGE);
  const one = new Uint8Array(1);
  for (let p = 0; p < frames - 64; p++) {
    await svc.vmMove(ctx, vmid, p * PAGE, 1, UIO_READ, { iov: [one], offset: 0, resid: 1, segflg: 0 });
  }
  const after = used();
  const bytes = after - before - frames * PAGE;
  void vmm;
  return bytes / frames;
}

async function perNonResidentPage(pages: number): Promise<number> {
  const { vmm, svc, ctx } = await engine(1024);
  const vmid = await svc.vmsCreate(ctx, V_WORKING, pages * PAGE);
  const data = new Uint8Array(PAGE).fill(7);
  await svc.vmMove(ctx, vmid, 0, PAGE, UIO_WRITE, { iov: [data], offset: 0, resid: PAGE, segflg: 0 });
  await svc.vmFlushp(ctx, vmid, 0, 1);
  await settle();
  const before = used();
  for (let p = 1; p < pages; p++) {
    await svc.vmMove(ctx, vmid, p * PAGE, PAGE, UIO_WRITE, { iov: [data], offset: 0, resid: PAGE, segflg: 0 });
    if (p % 512 === 0) {
      await svc.vmFlushp(ctx, vmid, p - 512, 512);
      await settle();
    }
  }
  await svc.vmFlushp(ctx, vmid, 0, pages);
  await svc.vmsIowait(ctx, vmid);
  await settle();
  const after = used();
  void vmm;
  return (after - before) / pages;
}

async function allocationPerMove(bytes: number, moves: number): Promise<number> {
  const { svc, ctx } = await engine(64);
  const vmid = await svc.vmsCreate(ctx, V_WORKING, PAGE);
  const buf = new Uint8Array(bytes);
  const uio = { iov: [buf], offset: 0, resid: bytes, segflg: 0 };
  await svc.vmMove(ctx, vmid, 0, bytes, UIO_WRITE, uio);
  for (let i = 0; i < 1000; i++) {
    uio.resid = bytes;
    await svc.vmMove(ctx, vmid, 0, bytes, UIO_READ, uio); // warm up the JIT
  }
  gc!();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < moves; i++) {
    uio.resid = bytes;
    await svc.vmMove(ctx, vmid, 0, bytes, UIO_READ, uio);
  }
  const after = process.memoryUsage().heapUsed;
  return (after - before) / moves;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

export async function engineMemory(runs = 5): Promise<Record<string, { median: number; min: number; max: number; limit?: number }>> {
  const stat = (xs: number[], limit?: number) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), limit });
  const frames: number[] = [];
  const pages: number[] = [];
  const moves: Record<number, number[]> = { 64: [], 1024: [], 4096: [] };
  for (let r = 0; r < runs; r++) {
    frames.push(await perFrame(65_536));
    pages.push(await perNonResidentPage(65_536));
    for (const size of [64, 1024, 4096]) moves[size].push(await allocationPerMove(size, 20_000));
  }
  return {
    'bookkeeping bytes per frame': stat(frames, 64),
    'bytes per mapped non-resident page': stat(pages, 16),
    'heap bytes allocated per vm_move of 64 B': stat(moves[64]),
    'heap bytes allocated per vm_move of 1 KiB': stat(moves[1024]),
    'heap bytes allocated per vm_move of 4 KiB': stat(moves[4096]),
  };
}

if (process.argv[1]?.endsWith('engine-memory.js')) {
  const results = await engineMemory();
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(results, null, 2));
  } else {
    console.log('engine memory (median of 5, min..max)');
    for (const [name, { median, min, max, limit }] of Object.entries(results)) {
      const verdict = limit === undefined ? '' : median <= limit ? `  (limit ${limit}: met)` : `  (limit ${limit}: MISSED)`;
      console.log(`  ${name.padEnd(44)} ${median.toFixed(1).padStart(8)}  [${min.toFixed(1)}..${max.toFixed(1)}]${verdict}`);
    }
  }
}

import { V_WORKING } from '../../src/constants.js';
import { Vmm, type VmmOptions } from '../../src/vm/vmm.js';
import { VmServices } from '../../src/vm/services.js';
import type { ClientContext } from '../../src/vm/context.js';
import { MemoryStore } from './memory-store.js';

export interface TestEngine {
  store: MemoryStore;
  vmm: Vmm;
  svc: VmServices;
  ctx: ClientContext;
}

export const PAGE = 4096;

/** An engine over the in-memory store double, with small defaults tests can override. */
export async function testEngine(options: Partial<VmmOptions> & { capacitySlots?: number; uid?: number } = {}): Promise<TestEngine> {
  const store = new MemoryStore(PAGE, options.capacitySlots);
  const vmm = await Vmm.open(store, {
    frames: 64,
    minFree: 4,
    maxFree: 8,
    writebackMinAgeMs: 2000,
    allocTimeoutMs: 200,
    pageoutBatchPages: 16,
    ...options,
  });
  const svc = new VmServices(vmm);
  const ctx = svc.createContext({ uid: options.uid ?? 1000, gid: 1000, pid: 4242 });
  return { store, vmm, svc, ctx };
}

/** Settles once every queued promise callback and immediate has run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export function filled(byte: number, length = PAGE): Uint8Array {
  return new Uint8Array(length).fill(byte);
}

/** A uio over fresh buffers (or the given ones) ready to move all of them. */
export function uioOf(...iov: Uint8Array[]): { iov: Uint8Array[]; offset: number; resid: number; segflg: number } {
  return { iov, offset: 0, resid: iov.reduce((n, b) => n + b.length, 0), segflg: 0 };
}

export async function writeBytes(e: TestEngine, vmid: number, offset: number, data: Uint8Array): Promise<number> {
  return e.svc.vmMove(e.ctx, vmid, offset, data.length, 1, uioOf(data));
}

export async function readBytes(e: TestEngine, vmid: number, offset: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await e.svc.vmMove(e.ctx, vmid, offset, length, 0, uioOf(buf));
  return buf;
}

/** The frame holding page `pno` of `vmid`, or -1. */
export function frameOf(e: TestEngine, vmid: number, pno: number): number {
  const seg = e.vmm.segments.get(vmid);
  return seg === undefined ? -1 : seg.pages.get(pno);
}

/** A working segment of `pages` pages, attached for writing at the returned vaddr. */
export async function attachedSegment(pages = 8): Promise<TestEngine & { vmid: number; vaddr: number }> {
  const e = await testEngine();
  const vmid = await e.svc.vmsCreate(e.ctx, V_WORKING, pages * PAGE);
  const vaddr = e.svc.vmAtt(e.ctx, vmid, 0, 'write');
  return { ...e, vmid, vaddr };
}

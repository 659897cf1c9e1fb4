import { UIO_READ, UIO_WRITE } from '../constants.js';
import { PagerError } from '../errors.js';
import { allocBuffer } from '../protocol/buffer-slab.js';
import type { Value } from '../protocol/codec.js';
import type { OperationName } from '../protocol/operations.js';
import type { Access } from '../vm/address-space.js';
import type { ClientContext } from '../vm/context.js';
import type { VmServices } from '../vm/services.js';

/** What a handler needs besides its arguments. */
export interface HandlerEnv {
  svc: VmServices;
  ctx: ClientContext;
  /** Largest move one request may carry. */
  maxMoveBytes: number;
  /** Daemon-wide answers (stats, metrics, segments, verify) and request cancellation. */
  stats(): object;
  metrics(): Promise<string>;
  segments(ctx: ClientContext): object[];
  verify(after: { vmid: number; pno: number }, limit: number): Promise<object>;
  /** pagerctl backup: page-outs held for this connection (answers the device's path), then the metadata's snapshot. */
  backupBegin(): Promise<string>;
  backupFinish(): Promise<string>;
  /** This connection's paging devices (client file systems' strategy routines). */
  devices: ConnectionDevices;
  cancel(id: number): void;
}

/** The paging device services, for one connection (docs/external-pager.md). */
export interface ConnectionDevices {
  /** `byReference`: the device's writes name the shared frames that hold their pages. */
  mount(byReference: boolean): number;
  umount(device: number): Promise<void>;
  /** `from`: only while the segment is bound to that device (0: to none). */
  setdevid(vmid: number, device: number, from?: number): void;
  /** vms_delete, only while the segment is bound to device `from` (0: to none). */
  deleteFrom(vmid: number, from: number): Promise<void>;
  createOn(type: number, size: number, options: number, mode: number, device: number): Promise<number>;
  list(): object[];
}

/** A handler's answer: results, and the error that ended the call, if any (a move reports both). */
export interface Outcome {
  results: Value[];
  error?: PagerError;
}

/** A handler's answer: at once where nothing waits (a move of resident pages), else a promise. */
export type Answer = Value[] | Outcome;

/**
 * A handler: decoded arguments in, answer out. `signal` is the request's cancellation, made on
 * first use (only waits on V_INTRSEG segments use it).
 */
type Handler = (env: HandlerEnv, args: Value[], signal: () => AbortSignal) => Answer | Promise<Answer>;

const n = (v: Value): number => v as number;
const EMPTY = new Uint8Array(0);

/**
 * vm_move and vm_uiomove: the uio travels as (offset, resid, segflg) plus the bytes to write, and
 * `requestEnd`, where the client's whole request ends in the segment (a long move travels in
 * pieces; the extent check covers the whole).
 */
function move(
  env: HandlerEnv,
  signal: () => AbortSignal,
  vmid: number,
  offset: number | undefined,
  limit: number,
  rw: number,
  uioOffset: number,
  resid: number,
  segflg: number,
  requestEnd: number,
  data: Uint8Array,
): Outcome | Promise<Outcome> {
  if (!Number.isSafeInteger(resid) || resid < 0 || !Number.isSafeInteger(uioOffset) || uioOffset < 0) throw new PagerError('malformed-uio');
  const bytes = Number.isFinite(limit) ? Math.max(0, Math.min(limit, resid)) : 0;
  let buffer: Uint8Array;
  if (rw === UIO_WRITE) {
    if (data.length !== bytes) throw new PagerError('malformed-uio', `a write of ${bytes} bytes carried ${data.length}`);
    buffer = data;
  } else {
    if (bytes > env.maxMoveBytes) throw new PagerError('move-too-large');
    // Unzeroed: only the bytes the move fills are ever sent. A bad rw gets its buffer too, so the
    // service checks the extent (EFAULT) before rw (EINVAL), in SPEC order.
    buffer = bytes === 0 ? EMPTY : allocBuffer(bytes);
  }
  const uio = { iov: [buffer], offset: uioOffset, resid: buffer.length, segflg };
  const moved = (): Value[] => [buffer.length - uio.resid, rw === UIO_READ ? buffer.subarray(0, buffer.length - uio.resid) : EMPTY];
  // A move that fails part way still reports what it moved.
  const failed = (err: unknown): Outcome => {
    if (err instanceof PagerError) return { results: moved(), error: err };
    throw err;
  };
  let done: number | Promise<number>;
  try {
    done = env.svc.moveNow(env.ctx, vmid, offset, limit, rw, uio, signal, requestEnd);
  } catch (err) {
    return failed(err);
  }
  return typeof done === 'number' ? { results: moved() } : done.then(() => ({ results: moved() }), failed);
}

/**
 * Reply bytes a request will bring (a read's data); the connection counts them against its
 * queue cap before the reply exists. Other replies are small.
 */
export function promisedReplyBytes(op: OperationName, args: Value[]): number {
  if (op !== 'vmMove' && op !== 'vmUiomove') return 0;
  const at = op === 'vmMove' ? 2 : 1; // limit, rw, uio.offset, uio.resid
  const bytes = args[at + 1] === UIO_READ ? Math.min(args[at] as number, args[at + 3] as number) : 0;
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : 0;
}

/**
 * One handler per operation: decoded arguments in, results out. (sharedFrames is answered by the
 * connection itself: its reply carries descriptors, sent outside the reply stream.)
 */
export const HANDLERS: Record<Exclude<OperationName, 'sharedFrames'>, Handler> = {
  vmsCreate: async ({ svc, ctx }, a) => [await svc.vmsCreate(ctx, n(a[0]), n(a[1]), n(a[2]), n(a[3]))],
  vmsDelete: async ({ svc, ctx }, a) => (await svc.vmsDelete(ctx, n(a[0])), []),
  vmAtt: async ({ svc, ctx }, a) => [svc.vmAtt(ctx, n(a[0]), n(a[1]), a[2] as Access)],
  vmDet: async ({ svc, ctx }, a) => (svc.vmDet(ctx, n(a[0])), []),
  ioAtt: async ({ svc, ctx }, a) => [svc.ioAtt(ctx, n(a[0]))],
  vmWrite: async ({ svc, ctx }, a) => (await svc.vmWrite(ctx, n(a[0]), n(a[1]), n(a[2])), []),
  vmRelease: async ({ svc, ctx }, a) => (await svc.vmRelease(ctx, n(a[0]), n(a[1])), []),
  vmMove: (env, a, signal) => move(env, signal, n(a[0]), n(a[1]), n(a[2]), n(a[3]), n(a[4]), n(a[5]), n(a[6]), n(a[7]), a[8] as Uint8Array),
  vmUiomove: (env, a, signal) => move(env, signal, n(a[0]), undefined, n(a[1]), n(a[2]), n(a[3]), n(a[4]), n(a[5]), n(a[6]), a[7] as Uint8Array),
  vmIoaccessp: async ({ svc, ctx }, a, signal) => (await svc.vmIoaccessp(ctx, n(a[0]), n(a[1]), n(a[2]), n(a[3]), signal), []),
  vmWritep: async ({ svc, ctx }, a) => (await svc.vmWritep(ctx, n(a[0]), n(a[1]), n(a[2])), []),
  vmReleasep: async ({ svc, ctx }, a) => (await svc.vmReleasep(ctx, n(a[0]), n(a[1]), n(a[2])), []),
  vmFlushp: async ({ svc, ctx }, a) => (await svc.vmFlushp(ctx, n(a[0]), n(a[1]), n(a[2])), []),
  vmReadp: async ({ svc, ctx }, a, signal) => (await svc.vmReadp(ctx, n(a[0]), n(a[1]), n(a[2]), n(a[3]), signal), []),
  vmMakep: async ({ svc, ctx }, a, signal) => (await svc.vmMakep(ctx, n(a[0]), n(a[1]), signal), []),
  vmInvalidatep: async ({ svc, ctx }, a, signal) => (await svc.vmInvalidatep(ctx, n(a[0]), n(a[1]), n(a[2]), signal), []),
  vmQpages: async ({ svc, ctx }, a) => [svc.vmQpages(ctx, n(a[0]))],
  vmQmodify: async ({ svc, ctx }, a) => [svc.vmQmodify(ctx, n(a[0])) ? 1 : 0],
  vmsIowait: async ({ svc, ctx }, a, signal) => (await svc.vmsIowait(ctx, n(a[0]), signal), []),
  vmsIowaitf: async ({ svc, ctx }, a, signal) => (await svc.vmsIowaitf(ctx, n(a[0]), n(a[1]), signal), []),
  stats: async (env) => [JSON.stringify(env.stats())],
  segments: async (env) => [JSON.stringify(env.segments(env.ctx))],
  verify: async (env, a) => [JSON.stringify(await env.verify({ vmid: n(a[0]), pno: n(a[1]) }, n(a[2])))],
  metrics: async (env) => [await env.metrics()],
  cancel: async (env, a) => (env.cancel(n(a[0])), []),
  backupBegin: async (env) => [await env.backupBegin()],
  backupFinish: async (env) => [await env.backupFinish()],
  vmMounte: async (env) => [env.devices.mount(false)],
  vmMounteFrames: async (env) => [env.devices.mount(true)],
  vmUmount: async (env, a) => (await env.devices.umount(n(a[0])), []),
  vmSetdevid: async (env, a) => (env.devices.setdevid(n(a[0]), n(a[1])), []),
  vmSetdevidFrom: async (env, a) => (env.devices.setdevid(n(a[0]), n(a[1]), n(a[2])), []),
  vmsDeleteFrom: async (env, a) => (await env.devices.deleteFrom(n(a[0]), n(a[1])), []),
  vmsCreateOn: async (env, a) => [await env.devices.createOn(n(a[0]), n(a[1]), n(a[2]), n(a[3]), n(a[4]))],
  devices: async (env) => [JSON.stringify(env.devices.list())],
};

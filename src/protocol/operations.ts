/**
 * The operations of the wire protocol: one code each, with the kinds of its arguments and
 * results. Codes are permanent (docs/protocol.md).
 *
 *   n: a number (float64: the daemon checks it is an integer in range, as the services do)
 *   b: bytes
 *   s: a UTF-8 string
 */
export type ValueKind = 'n' | 'b' | 's';

export interface Operation {
  code: number;
  args: readonly ValueKind[];
  results: readonly ValueKind[];
}

export const OPERATIONS = {
  vmsCreate: { code: 1, args: ['n', 'n', 'n', 'n'], results: ['n'] },
  vmsDelete: { code: 2, args: ['n'], results: [] },
  vmAtt: { code: 3, args: ['n', 'n', 's'], results: ['n'] },
  vmDet: { code: 4, args: ['n'], results: [] },
  ioAtt: { code: 5, args: ['n'], results: ['n'] },
  vmWrite: { code: 6, args: ['n', 'n', 'n'], results: [] },
  vmRelease: { code: 7, args: ['n', 'n'], results: [] },
  // vmid, offset, limit, rw, uio.offset, uio.resid, uio.segflg, end of the whole request in the
  // segment, bytes to write -> moved, bytes read
  vmMove: { code: 8, args: ['n', 'n', 'n', 'n', 'n', 'n', 'n', 'n', 'b'], results: ['n', 'b'] },
  // vmid, limit, rw, uio.offset, uio.resid, uio.segflg, end of the whole request, bytes to write
  // -> moved, bytes read
  vmUiomove: { code: 9, args: ['n', 'n', 'n', 'n', 'n', 'n', 'n', 'b'], results: ['n', 'b'] },
  vmIoaccessp: { code: 10, args: ['n', 'n', 'n', 'n'], results: [] },
  vmWritep: { code: 11, args: ['n', 'n', 'n'], results: [] },
  vmReleasep: { code: 12, args: ['n', 'n', 'n'], results: [] },
  vmFlushp: { code: 13, args: ['n', 'n', 'n'], results: [] },
  vmReadp: { code: 14, args: ['n', 'n', 'n', 'n'], results: [] },
  vmMakep: { code: 15, args: ['n', 'n'], results: [] },
  vmInvalidatep: { code: 16, args: ['n', 'n', 'n'], results: [] },
  vmQpages: { code: 17, args: ['n'], results: ['n'] },
  vmQmodify: { code: 18, args: ['n'], results: ['n'] },
  vmsIowait: { code: 19, args: ['n'], results: [] },
  vmsIowaitf: { code: 20, args: ['n', 'n'], results: [] },
  // -> JSON text
  stats: { code: 21, args: [], results: ['s'] },
  segments: { code: 22, args: [], results: ['s'] },
  // after vmid, after pno, limit -> JSON scrub chunk (pagerctl verify loops until next is null)
  verify: { code: 23, args: ['n', 'n', 'n'], results: ['s'] },
  metrics: { code: 24, args: [], results: ['s'] },
  // Cancels the caller's request with that id: a wait on a V_INTRSEG segment ends with EINTR.
  cancel: { code: 25, args: ['n'], results: [] },
  // -> bytes of the shared frame pool, bytes of its access map; the reply carries their two
  // descriptors (SCM_RIGHTS), and the daemon closes the connection after it (docs/protocol.md).
  sharedFrames: { code: 26, args: [], results: ['n', 'n'] },
  // A consistent copy of a live store (pagerctl backup): begin holds page-outs (until finish, or
  // the connection closes) -> the device path; finish writes a snapshot of the metadata into the
  // state directory and lets page-outs go on -> the snapshot's path.
  backupBegin: { code: 27, args: [], results: ['s'] },
  backupFinish: { code: 28, args: [], results: ['s'] },
  // Client file systems (docs/external-pager.md): mount a paging device served by this
  // connection's strategy routine -> its id; unmount it; rebind a segment; create a client
  // segment bound to a device (type, size, options, mode, device -> vmid); the device table (JSON).
  vmMounte: { code: 29, args: [], results: ['n'] },
  vmUmount: { code: 30, args: ['n'], results: [] },
  vmSetdevid: { code: 31, args: ['n', 'n'], results: [] },
  vmsCreateOn: { code: 32, args: ['n', 'n', 'n', 'n', 'n'], results: ['n'] },
  devices: { code: 33, args: [], results: ['s'] },
  // vm_mounte of a device whose page-outs name the frames of the daemon's shared pool (-> device).
  vmMounteFrames: { code: 34, args: [], results: ['n'] },
  // vm_setdevid only while the segment is bound to the device named last (0: to none): EBUSY otherwise.
  vmSetdevidFrom: { code: 35, args: ['n', 'n', 'n'], results: [] },
  vmsDeleteFrom: { code: 36, args: ['n', 'n'], results: [] },
} as const satisfies Record<string, Operation>;

export type OperationName = keyof typeof OPERATIONS;

export const OPERATION_BY_CODE: ReadonlyMap<number, OperationName> = new Map(
  (Object.entries(OPERATIONS) as [OperationName, Operation][]).map(([name, op]) => [op.code, name]),
);

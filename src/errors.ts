/**
 * The one registry of pagerd's error answers.
 *
 * A PagerError carries `code` (the errno name), `errno` (the Linux number) and `reason`, a stable
 * kebab-case name of the documented condition that fired. Codes and reasons are permanent: they
 * are part of the protocol and listed in docs/errors.md (a test keeps the two in step). Messages
 * may change.
 */

import { constants } from 'node:os';

const LINUX_ERRNO = constants.errno as Readonly<Record<string, number>>;
const LINUX_ERRNO_NAMES = new Map<number, string>(Object.entries(LINUX_ERRNO).map(([name, n]) => [n, name]));

/** The number of a Linux errno name (ESTALE: 116); undefined for a name Linux does not have. */
export function errnoNumber(name: string): number | undefined {
  return Object.hasOwn(LINUX_ERRNO, name) ? LINUX_ERRNO[name] : undefined;
}

/** The name of a Linux errno number (116: ESTALE); undefined for a number Linux does not name. */
export function errnoName(errno: number): string | undefined {
  return LINUX_ERRNO_NAMES.get(errno);
}

/** Linux errno numbers for the codes pagerd answers with. */
export const ERRNO = {
  EIO: 5,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EINVAL: 22,
  ENOSPC: 28,
  EINTR: 4,
  EAGAIN: 11,
  EBUSY: 16,
  EDEADLK: 35,
  EPROTO: 71,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
} as const;

export type ErrorCode = keyof typeof ERRNO;

/** Every documented condition: its code and what it means. */
export const REASONS = {
  // Address-range services (vm_write, vm_release) and attachments.
  'region-not-defined': { code: 'EINVAL', text: 'the address lies in no attached region' },
  'io-region': { code: 'EINVAL', text: 'the address lies in an I/O region, which page services refuse' },
  'negative-length': { code: 'EINVAL', text: 'nbytes is negative' },
  'crosses-object-boundary': { code: 'EINVAL', text: "the range leaves its region or the segment's extent" },
  'large-pages': { code: 'EINVAL', text: 'the segment has large pages, which this service does not support' },
  'no-free-region': { code: 'ENOMEM', text: 'every region of the address space is in use' },
  'offset-beyond-extent': { code: 'EINVAL', text: "vm_att's offset lies outside the segment's extent" },
  'bad-access': { code: 'EINVAL', text: "an access mode other than 'read' or 'write'" },
  'region-too-large': { code: 'EINVAL', text: 'io_att of zero bytes or more than one 256 MiB region' },
  'no-write-access': { code: 'EACCES', text: 'the region is attached read-only, or the mode denies writing' },
  'no-read-access': { code: 'EACCES', text: "the segment's mode denies reading to the caller" },
  // Segments and page ranges.
  'no-such-segment': { code: 'EINVAL', text: 'no segment with that vmid exists (or the caller may not see it)' },
  'zero-range': { code: 'EINVAL', text: 'pfirst = 0 and npages = 0' },
  'negative-page': { code: 'EINVAL', text: 'the first page number is negative' },
  'negative-count': { code: 'EINVAL', text: 'the page count is negative' },
  'range-beyond-extent': { code: 'EINVAL', text: "the page interval passes the segment's extent" },
  'bad-page-number': { code: 'EINVAL', text: "the page number is negative or past the segment's extent" },
  'make-too-large': { code: 'EINVAL', text: 'vm_ioaccessp MAKE of more than 1 MiB of pages' },
  'not-client-segment': { code: 'EINVAL', text: 'the service applies to client segments only' },
  'unsupported-flag': { code: 'EINVAL', text: 'a flag outside the documented set' },
  'make-and-flush': { code: 'EINVAL', text: 'vm_ioaccessp MAKE and FLUSH both set' },
  'waitonly-without-wait': { code: 'EINVAL', text: 'WAITONLY with neither PGINWAIT nor PGOUTWAIT' },
  'waitonly-with-action': { code: 'EINVAL', text: 'WAITONLY with MAKE or FLUSH' },
  'bad-type': { code: 'EINVAL', text: 'a segment type other than working, client or persistent' },
  'bad-option': { code: 'EINVAL', text: 'an option bit outside V_LARGE, V_INTRSEG and V_LGPAGE' },
  'bad-size': { code: 'EINVAL', text: 'a segment size that is negative, not an integer, or past the maximum extent' },
  'bad-mode': { code: 'EINVAL', text: 'a segment mode outside 0..0o777' },
  'bad-argument': { code: 'EINVAL', text: 'an argument that is not an integer in its range' },
  'bad-rw': { code: 'EINVAL', text: 'rw is neither UIO_READ nor UIO_WRITE' },
  // Moving data.
  'beyond-extent': { code: 'EFAULT', text: "the byte range passes the segment's extent" },
  'malformed-uio': { code: 'EFAULT', text: 'the uio is malformed (iovecs, offset, resid or segflg)' },
  'cross-memory': { code: 'EFAULT', text: 'segflg UIO_XMEM: cross-memory descriptors are not supported' },
  'no-frame': { code: 'ENOMEM', text: 'no page frame could be had within memory.allocTimeoutMs' },
  'pinned-limit': { code: 'ENOMEM', text: "the segment's owner already holds its share (memory.maxPinnedShare) of the pool pinned in large-page segments" },
  'metadata-full': { code: 'ENOMEM', text: 'the metadata store cannot take another segment' },
  'no-backing-space': { code: 'ENOSPC', text: 'the backing store has no slot left to back a newly modified page' },
  // I/O.
  'store-failed': { code: 'EIO', text: 'the backing store has failed permanently' },
  'page-in-failed': { code: 'EIO', text: 'reading a page from the backing store failed' },
  'checksum-mismatch': { code: 'EIO', text: 'a backing slot failed its checksum' },
  'metadata-failed': { code: 'EIO', text: 'the metadata store could not record the change durably' },
  'page-out-failed': { code: 'EIO', text: 'a page-out of the segment failed; the page stays modified' },
  'move-too-large': { code: 'EINVAL', text: 'a single move request larger than the maximum payload (clients split moves)' },
  // The wire protocol.
  'malformed-request': { code: 'EPROTO', text: 'a request that cannot be decoded (truncated, wrong kinds, trailing bytes)' },
  'unknown-operation': { code: 'EPROTO', text: 'a request for an operation code the daemon does not know' },
  'frame-too-large': { code: 'EPROTO', text: 'a frame longer than server.maxPayloadBytes; the connection is closed' },
  'protocol-version': { code: 'EPROTO', text: 'a hello with a protocol version the daemon does not speak; the connection is closed' },
  'not-hello': { code: 'EPROTO', text: 'the first frame of a connection was not a hello; the connection is closed' },
  'internal-error': { code: 'EIO', text: 'the daemon failed unexpectedly while serving the request (it is logged)' },
  'interrupted': { code: 'EINTR', text: 'a wait on a V_INTRSEG segment was interrupted' },
  'shared-frames-not-offered': { code: 'EACCES', text: "shared frames are offered only to the daemon's own uid, root and members of server.sharedFramesGroup, and only when server.sharedFrames is on" },
  'too-many-connections': { code: 'EAGAIN', text: "the daemon is at a connection cap (server.maxConnections, or the uid's share); the connection is closed" },
  // Backups (pagerctl backup).
  'backup-in-progress': { code: 'EBUSY', text: 'another backup holds page-outs; one backup runs at a time' },
  'no-backup': { code: 'EINVAL', text: 'backupFinish on a connection that did not begin a backup' },
  // Client file systems: segments paged by a strategy routine (docs/external-pager.md).
  'file-system-error': { code: 'EIO', text: "the client file system's strategy routine failed the I/O: the answer carries its errno (EIO when it gave none)" },
  'no-such-device': { code: 'EINVAL', text: 'no paging device with that id is mounted (or it belongs to another uid)' },
  'device-busy': { code: 'EBUSY', text: 'segments are still bound to the paging device' },
  'segment-rebound': { code: 'EBUSY', text: 'vmSetdevid or vmsDelete with `from`: the segment is bound to another device than the one named (another program rebound it)' },
  'stranded-pages': { code: 'ENOMEM', text: "the segment's paging device is gone, and segments without a live device already hold their share (strategy.maxStrandedShare) of the pool in modified pages" },
  'modified-limit': {
    code: 'ENOMEM',
    text: "the segment's owner holds its share (strategy.maxModifiedShare) of the pool in client-segment pages its file systems have not written, or all client segments theirs (strategy.maxModifiedTotalShare), and their page-outs made no room within memory.allocTimeoutMs",
  },
  'deadlock': { code: 'EDEADLK', text: "the call would wait on a page its own connection's strategy routine is reading in, or writing out from its frame, right now" },
  'device-gone': { code: 'EIO', text: "the paging device's connection closed, or its strategy did not answer within strategy.timeoutMs" },
  // Seen by the client library only.
  'protocol-error': { code: 'EPROTO', text: 'the daemon sent a frame the client cannot decode, or one the protocol does not send that way; the connection is closed' },
  'connection-closed': { code: 'ECONNRESET', text: 'the connection to the daemon closed; calls pending on it, and later ones, fail' },
  'connect-timeout': { code: 'ETIMEDOUT', text: 'connecting and the handshake took longer than connectTimeoutMs' },
} as const satisfies Record<string, { code: ErrorCode; text: string }>;

export type Reason = keyof typeof REASONS;

export class PagerError extends Error {
  /** The errno name: the registry's for the reason, or a client file system's own (file-system-error). */
  readonly code: string;
  readonly errno: number;
  readonly reason: Reason;
  /** What happened, in words (may change; never match on it). */
  readonly detail: string;

  /** `fsErrno`: for file-system-error, the errno the file system's strategy answered (its name and number). */
  constructor(reason: Reason, detail?: string, fsErrno?: { code: string; errno: number }) {
    const { code, text } = REASONS[reason];
    const answered = fsErrno ?? { code, errno: ERRNO[code] };
    super(`${answered.code} (${reason}): ${detail ?? text}`);
    this.detail = detail ?? text;
    this.name = 'PagerError';
    this.code = answered.code;
    this.errno = answered.errno;
    this.reason = reason;
  }
}

export function isPagerError(err: unknown): err is PagerError {
  return err instanceof PagerError;
}

/**
 * pagerd's client library: the package's public entry point, listed by hand (nothing internal
 * leaks by accident). Imports nothing native and nothing of the daemon: only the client, the
 * error registry, the AIX constants, the shared uio and scrub shapes, and for the reference file
 * pager the group commit and positional I/O helpers.
 */
import { PagerClient, type ConnectOptions } from './client.js';

export { PagerClient, type ConnectOptions, type CreateOptions, type MountOptions, type SegmentInfo, type Strategy, type StrategyRequest, type Uio, type WaitOptions } from './client.js';
export { PagerError, ERRNO, REASONS, type ErrorCode, type Reason } from '../errors.js';
export type { ScrubTotals } from '../scrub-report.js';
export { NOT_A_REGULAR_FILE, FILE_IN_USE, FILE_HAS_SEGMENT, NOT_THE_FILES_SEGMENT, SEGMENT_IN_USE, SEGMENT_TAKEN, serveFile, type FilePager, type FilePagerOptions } from './file-pager.js';
export {
  UIO_READ,
  UIO_WRITE,
  UIO_USERSPACE,
  UIO_SYSSPACE,
  UIO_XMEM,
  V_WORKING,
  V_CLIENT,
  V_PERSISTENT,
  V_INTRSEG,
  V_LARGE,
  V_LGPAGE,
  VM_IOACCESSP_MAKE,
  VM_IOACCESSP_FLUSH,
  VM_IOACCESSP_PGINWAIT,
  VM_IOACCESSP_PGOUTWAIT,
  VM_IOACCESSP_WAITONLY,
  V_IOWAIT,
  V_WAITERR,
  V_WAITALL,
  REGION_BYTES,
  MAX_EXTENT,
  MAX_LARGE_EXTENT,
} from '../constants.js';

/** Connects to pagerd (socket: options.socket, else $PAGERD_SOCKET, else ./var/pagerd.sock). */
export function connect(options: ConnectOptions = {}): Promise<PagerClient> {
  return PagerClient.connect(options);
}

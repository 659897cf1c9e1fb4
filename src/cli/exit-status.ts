/**
 * Exit statuses of pagerd and pagerctl (sysexits.h), declared once: the commands exit with them,
 * their --help prints this table, and the README and the man pages carry it.
 */
import { ConfigError } from '../config/load-config.js';
import { PagerError } from '../errors.js';
import { StoreCorruptError, StoreRefusedError } from '../store/store-errors.js';

export const EXIT = {
  OK: 0,
  SERVICE: 1,
  USAGE: 64,
  DATAERR: 65,
  NOINPUT: 66,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  CANTCREAT: 73,
  IOERR: 74,
  TEMPFAIL: 75,
  NOPERM: 77,
  CONFIG: 78,
} as const;

export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

/** Each status: its sysexits name, and what it means from either command. */
export const EXIT_TABLE: readonly { status: ExitStatus; name: string; meaning: string }[] = [
  { status: EXIT.OK, name: 'EX_OK', meaning: 'success (pagerd: a graceful stop)' },
  { status: EXIT.SERVICE, name: 'EXIT_FAILURE', meaning: 'pagerctl: the daemon answered the request with an error' },
  { status: EXIT.USAGE, name: 'EX_USAGE', meaning: 'a bad flag or argument on the command line (size, number, mode, --memory ...)' },
  { status: EXIT.DATAERR, name: 'EX_DATAERR', meaning: "corruption: found by --check or verify, or refused at start-up (device and database do not belong together); pagerctl map-file --vmid: the segment is not the file's" },
  { status: EXIT.NOINPUT, name: 'EX_NOINPUT', meaning: 'a configured device does not exist (nothing is created)' },
  { status: EXIT.UNAVAILABLE, name: 'EX_UNAVAILABLE', meaning: 'pagerctl: the daemon cannot be reached; map-file: its segment was taken from it' },
  { status: EXIT.SOFTWARE, name: 'EX_SOFTWARE', meaning: 'an internal error (a bug: an exception nothing handled)' },
  { status: EXIT.CANTCREAT, name: 'EX_CANTCREAT', meaning: 'the state directory, database, backing file or socket cannot be created' },
  { status: EXIT.IOERR, name: 'EX_IOERR', meaning: 'an I/O error on the device or the database (pagerd: also a stop that could not page out every modified page; map-file: one that could not write them to the file)' },
  { status: EXIT.TEMPFAIL, name: 'EX_TEMPFAIL', meaning: 'temporary: the store or the socket is in use by another pagerd; pagerctl map-file: the file is served already, or still cached by the segment of a map-file that went away (adopt it with --vmid), or the segment to adopt is served by a live device' },
  { status: EXIT.NOPERM, name: 'EX_NOPERM', meaning: 'permission denied (state directory, device, socket; pagerctl map-file: a file it may not write, or on a read-only file system)' },
  { status: EXIT.CONFIG, name: 'EX_CONFIG', meaning: 'a bad value in the config file or a PAGERD_* variable, or a store refused as configured' },
];

/** The table as --help prints it. */
export function exitStatusHelp(): string {
  return `Exit status:\n${EXIT_TABLE.map((e) => `  ${String(e.status).padStart(3)}  ${e.name.padEnd(14)} ${e.meaning}`).join('\n')}\n`;
}

export function exitName(status: number): string {
  return EXIT_TABLE.find((e) => e.status === status)?.name ?? `EXIT_${status}`;
}

/** A refusal or failure that carries its own exit status. */
export class ExitError extends Error {
  constructor(
    readonly exitStatus: ExitStatus,
    message: string,
  ) {
    super(message);
    this.name = 'ExitError';
  }
}

const BY_ERRNO: Record<string, ExitStatus> = {
  EACCES: EXIT.NOPERM,
  EPERM: EXIT.NOPERM,
  ENOENT: EXIT.NOINPUT,
  EROFS: EXIT.CANTCREAT,
  ENOSPC: EXIT.CANTCREAT,
  EDQUOT: EXIT.CANTCREAT,
  ENOTDIR: EXIT.CANTCREAT,
  EISDIR: EXIT.CANTCREAT,
  EEXIST: EXIT.CANTCREAT,
  EIO: EXIT.IOERR,
  ENXIO: EXIT.IOERR,
  EBUSY: EXIT.TEMPFAIL,
  EAGAIN: EXIT.TEMPFAIL,
  EADDRINUSE: EXIT.TEMPFAIL,
};

const BY_SQLITE: [RegExp, ExitStatus][] = [
  [/^SQLITE_(BUSY|LOCKED)/, EXIT.TEMPFAIL],
  [/^SQLITE_(CANTOPEN|FULL|READONLY)/, EXIT.CANTCREAT],
  [/^SQLITE_PERM|^SQLITE_AUTH/, EXIT.NOPERM],
  [/^SQLITE_IOERR/, EXIT.IOERR],
];

/**
 * The exit status an error means. Errors that know theirs say so (`exitStatus`); store refusals,
 * configuration errors, system errors (by errno) and SQLite errors (by code) are mapped; anything
 * else is a bug, EX_SOFTWARE. A PagerError is a service's answer to pagerctl (EXIT_FAILURE, or
 * EX_UNAVAILABLE when the connection to the daemon failed); met by pagerd itself (a store failed
 * while it started or stopped), it maps by its errno.
 */
export function exitStatusOf(err: unknown, side: 'pagerd' | 'pagerctl' = 'pagerd'): number {
  if (err instanceof ConfigError) return err.exitStatus;
  if (err instanceof StoreCorruptError) return EXIT.DATAERR;
  if (err instanceof StoreRefusedError) return EXIT.CONFIG;
  if (err instanceof PagerError) {
    if (side === 'pagerctl') return ['connection-closed', 'connect-timeout', 'protocol-error'].includes(err.reason) ? EXIT.UNAVAILABLE : EXIT.SERVICE;
    return BY_ERRNO[err.code] ?? EXIT.SOFTWARE;
  }
  const own = (err as { exitStatus?: unknown } | undefined)?.exitStatus;
  if (typeof own === 'number') return own;
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') {
    if (code in BY_ERRNO) return BY_ERRNO[code];
    for (const [pattern, status] of BY_SQLITE) if (pattern.test(code)) return status;
  }
  return EXIT.SOFTWARE;
}

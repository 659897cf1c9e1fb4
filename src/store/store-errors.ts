import { SchemaTooNewError } from '../meta/migrations.js';
import { BrokenSealError } from '../meta/page-seal.js';

/** The store will not open this device with this metadata, and says why (exit status 78 for pagerd). */
export class StoreRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreRefusedError';
  }
}

/** Another pagerd holds the device (its lock, or O_EXCL on a block device): try again once it has stopped (EX_TEMPFAIL). */
export class StoreInUseError extends Error {
  readonly exitStatus = 75;
  constructor(message: string) {
    super(message);
    this.name = 'StoreInUseError';
  }
}

/**
 * The device and the metadata contradict each other: serving would serve stale or wrong pages.
 * pagerd exits 65 (EX_DATAERR) on it, and systemd does not restart it.
 */
export class StoreCorruptError extends StoreRefusedError {
  constructor(message: string) {
    super(message);
    this.name = 'StoreCorruptError';
  }
}

/**
 * An SQLite error at open that means the database itself is damaged (not busy, not a permission):
 * as a StoreCorruptError with one line; one that says it cannot be written, as a StoreRefusedError;
 * undefined for any other error.
 */
function unreadableMetadata(err: unknown, path: string): StoreRefusedError | undefined {
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || typeof message !== 'string') return undefined;
  const damaged = /^SQLITE_(CORRUPT|NOTADB)/.test(code) || (code === 'SQLITE_ERROR' && /malformed|no such (column|table)/.test(message));
  if (damaged) return new StoreCorruptError(`${path} is damaged (${message}): ${REFUSAL_ADVICE}`);
  if (code.startsWith('SQLITE_READONLY')) {
    // Permissions, a read-only file system, or a header that says a newer SQLite must write it.
    return new StoreRefusedError(`${path} cannot be written (${message}): check its permissions and its file system; if both allow writing, its header is damaged (pagerd --check)`);
  }
  return undefined;
}

/** What a refusal for corruption tells the operator to do. */
export const REFUSAL_ADVICE = 'refusing to start, so that no acknowledged page is overwritten or served wrong; `pagerd --check` lists every problem; restore the device and its database together from a backup';

/**
 * An error met while opening a store, as the refusal it means: a broken seal or a damaged
 * database as a StoreCorruptError, an unwritable one or one a newer pagerd wrote as a
 * StoreRefusedError; undefined for others.
 */
export function refusalFor(err: unknown, databasePath: string): StoreRefusedError | undefined {
  if (err instanceof SchemaTooNewError) return new StoreRefusedError(`${databasePath}: ${err.message}`);
  if (err instanceof BrokenSealError) return new StoreCorruptError(`${databasePath}: ${err.message}: ${REFUSAL_ADVICE}`);
  return unreadableMetadata(err, databasePath);
}

import { BrokenSealError } from './page-seal.js';

/**
 * A BLOB column's value as read, or BrokenSealError: a flipped bit in a record's type byte turns
 * a BLOB into TEXT (or a number), which SQLite's integrity check does not see. `what` names the
 * row only when it fails (page-map rows are read on every page-in).
 */
export function blobColumn(value: unknown, what: () => string): Buffer {
  if (!Buffer.isBuffer(value)) throw new BrokenSealError(what(), 'is not a BLOB');
  return value;
}

import type { DeviceOptions, BackingDevice } from './device.js';
import type { WalFile } from '../meta/wal-sync.js';
import type { IoObserver } from './io-timing.js';

/** What the store logs through (a pino logger fits). */
export interface StoreLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const SILENT: StoreLog = { info() {}, warn() {}, error() {} };

export interface StoreOptions extends DeviceOptions {
  devicePath: string;
  databasePath: string;
  /** Page size the store is formatted with (4096 or 65536); an existing store must match. */
  pageSize: number;
  /** Slots held back from reservations, as room for copy-on-write. */
  spareSlots: number;
  /** Most pages written in one cycle (one fdatasync, one transaction). */
  maxBatchPages: number;
  /** Format the device even if it holds something that is not a pagerd store (pagerd --format). */
  format: boolean;
  /**
   * Open a store whose page map contradicts itself instead of refusing it, to report what is
   * wrong (pagerd --check: `pageMapProblems`). Nothing may be written through such a store.
   */
  reportOnly?: boolean;
  log?: StoreLog;
  /** Told how long each device operation and metadata commit took (metrics). */
  observeIo?: IoObserver;
  /** Opens the device; tests substitute a simulated one. */
  openDevice?: (path: string, options: DeviceOptions) => Promise<BackingDevice>;
  /** Opens the metadata's WAL file for its syncs (wal-sync.ts); tests substitute a failing one. */
  openWal?: (path: string) => Promise<WalFile>;
}

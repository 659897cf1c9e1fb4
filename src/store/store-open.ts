import { existsSync } from 'node:fs';
import { integrityCheck, openDatabase, type Database } from '../meta/database.js';
import { MetaTable } from '../meta/meta-table.js';
import { cycleMismatch, cycleRecord, newestRecordedCycle } from './cycle-record.js';
import { openDevice, type BackingDevice } from './device.js';
import { encodeHeader, FORMAT_VERSION, HEADER_PROBE_BYTES, newHeader, probeHeader, type HeaderProbe, type StoreHeader } from './header.js';
import { REFUSAL_ADVICE, refusalFor, StoreCorruptError, StoreRefusedError } from './store-errors.js';
import type { StoreOptions } from './store-options.js';

/** A store's device and database, opened and found to belong together, for PersistentStore to run on. */
export interface OpenedStoreFiles {
  device: BackingDevice;
  db: Database;
  header: StoreHeader;
  /** Result of the integrity check run after an unclean shutdown ('ok'), or undefined if none ran. */
  recovery: string | undefined;
}

/**
 * Opens (and on first use formats) a store's device and database, and checks that they belong
 * together before anything is served. Refuses, with one line saying why and what to do: a device
 * that holds something else (unless options.format), a page size or store id that does not match
 * the metadata, a device and metadata whose page-out cycles cannot belong together (cycle-record.ts),
 * metadata that fails its integrity check after an unclean shutdown, and a damaged slot high water.
 * Marks the shutdown unclean until the store closes cleanly.
 */
export async function openStoreFiles(options: StoreOptions): Promise<OpenedStoreFiles> {
  // A backing file created too small would be refused at format, and left behind to refuse the
  // corrected configuration too: refused before anything is created.
  if (!existsSync(options.devicePath) && options.createBytes < 2 * options.pageSize) {
    throw new StoreRefusedError(`store.createBytes ${options.createBytes} is too small for a ${options.devicePath} of the header and one page of ${options.pageSize} bytes (at least ${2 * options.pageSize})`);
  }
  const device = await (options.openDevice ?? openDevice)(options.devicePath, options);
  let db: Database | undefined;
  try {
    // The device is read before the database is opened (and, on first start, created): a device
    // that fails its reads refuses the start with nothing created.
    const probe = new Uint8Array(HEADER_PROBE_BYTES);
    await device.read(probe, 0).catch((err: NodeJS.ErrnoException) => {
      throw Object.assign(new Error(`cannot read the header of ${options.devicePath}: ${err.message}`), { code: err.code });
    });
    db = openDatabase(options.databasePath);
    const meta = new MetaTable(db);
    const found = probeHeader(probe);
    const knownId = meta.get('store_id');
    const where = options.devicePath;
    let header: StoreHeader;
    let fresh = false;
    if (found.kind === 'ours' && knownId === found.header.storeId) {
      header = found.header;
      if (header.pageSize !== options.pageSize) {
        throw new StoreRefusedError(`${where} is formatted with page size ${header.pageSize}, not the configured ${options.pageSize}`);
      }
      if (header.formatVersion < FORMAT_VERSION) header = await upgradeHeader(device, header, options);
    } else if (found.kind === 'blank' && knownId === undefined) {
      header = await format(device, db, options);
      fresh = true;
    } else if (options.format) {
      options.log?.warn({ device: where, found: found.kind }, 'formatting the store as asked (--format): its old contents are gone');
      header = await format(device, db, options);
      fresh = true;
    } else if (found.kind === 'foreign') {
      throw new StoreRefusedError(`${where} holds data that is not a pagerd store (${found.why}); refusing to overwrite it without --format`);
    } else {
      // A device and a database that do not belong together: corruption (65), not a setting.
      throw new StoreCorruptError(`${mismatch(found, knownId, where, options.databasePath)}: ${REFUSAL_ADVICE} (--format starts over, discarding both)`);
    }
    if (!fresh) {
      const deviceCycle = newestRecordedCycle(probe, header.storeId);
      const metadataCycle = Number(meta.get('cycle') ?? 0);
      const mismatch = cycleMismatch(deviceCycle, metadataCycle);
      if (mismatch !== undefined) {
        throw new StoreCorruptError(`${where} and ${options.databasePath} do not belong together: ${mismatch}. Refusing to serve stale pages: put back the database (with its -wal file) that goes with this device, or restore both from one backup`);
      }
      if (deviceCycle < metadataCycle) {
        // The last cycles' records had not reached the device (a crash): it records the
        // metadata's cycle now, before any page-out, so the next crash finds it no further behind.
        const { position, bytes } = cycleRecord(header.storeId, metadataCycle);
        await device.writev([bytes], position);
        await device.datasync();
      }
    }
    let recovery: string | undefined;
    if (!fresh && meta.get('clean_shutdown') !== '1') {
      recovery = integrityCheck(db);
      if (recovery !== 'ok') throw new StoreRefusedError(`metadata integrity check failed after an unclean shutdown: ${recovery}`);
      options.log?.info({ device: where }, 'recovered after an unclean shutdown; metadata integrity ok');
    }
    const high = meta.get('slot_high');
    if (!fresh && !/^\d+$/.test(high ?? '')) throw new StoreCorruptError(`${options.databasePath} holds no valid slot high water (meta.slot_high is ${JSON.stringify(high)}): ${REFUSAL_ADVICE}`);
    meta.set('clean_shutdown', 0);
    return { device, db, header, recovery };
  } catch (err) {
    db?.close();
    await device.close();
    throw refusalFor(err, options.databasePath) ?? err;
  }
}

/**
 * Brings an older format's header to FORMAT_VERSION. The metadata is already migrated (opening
 * the database did it, in one transaction), so a crash before this write only repeats it.
 */
async function upgradeHeader(device: BackingDevice, old: StoreHeader, options: StoreOptions): Promise<StoreHeader> {
  const header = { ...old, formatVersion: FORMAT_VERSION };
  await device.writev([encodeHeader(header)], 0);
  await device.datasync();
  options.log?.warn({ device: options.devicePath, from: old.formatVersion, to: FORMAT_VERSION }, 'upgraded the store to the current on-disk format');
  return header;
}

/** Writes a new header and empties the metadata, durably, header first. */
async function format(device: BackingDevice, db: Database, options: StoreOptions): Promise<StoreHeader> {
  if (options.pageSize !== 4096 && options.pageSize !== 65536) throw new StoreRefusedError(`page size must be 4096 or 65536, not ${options.pageSize}`);
  const slotCount = Math.floor((device.size - options.pageSize) / options.pageSize);
  if (slotCount < 1) throw new StoreRefusedError(`${options.devicePath} is too small for one page of ${options.pageSize} bytes after the header`);
  const header = newHeader(options.pageSize, slotCount);
  await device.writev([encodeHeader(header)], 0);
  await device.datasync();
  db.transaction(() => {
    db.exec('DELETE FROM page_map; DELETE FROM free_slot_map; DELETE FROM segments; DELETE FROM meta;');
    const meta = new MetaTable(db);
    meta.set('store_id', header.storeId);
    meta.set('page_size', header.pageSize);
    meta.set('slot_high', 0);
  }).immediate();
  return header;
}

/** Why a device and a database that are both pagerd's, or were, do not belong together. */
function mismatch(found: Exclude<HeaderProbe, { kind: 'foreign' }>, knownId: string | undefined, where: string, databasePath: string): string {
  if (found.kind === 'damaged') return `${where} starts with a pagerd header that fails its checksum (damaged)${knownId === undefined ? '' : `; ${databasePath} belongs to store ${knownId}`}`;
  if (found.kind === 'blank') return `${where} is blank, but the metadata in ${databasePath} belongs to store ${knownId}`;
  if (knownId === undefined) return `${where} is pagerd store ${found.header.storeId}, but its metadata database ${databasePath} is missing or empty (lost)`;
  return `${where} is pagerd store ${found.header.storeId}, but ${databasePath} belongs to store ${knownId}`;
}

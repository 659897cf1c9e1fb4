import { crc32c } from '../native/addon.js';

/**
 * The device's record of a page-out cycle whose commit is durable, so the device says how far the
 * metadata must have got (cycleMismatch says when it is written). Three copies, in
 * sectors 2, 4 and 6 of the header page, rotate by cycle number: a cycle's record overwrites the
 * copy of the cycle three before it, so while it is written (and may tear) the two cycles before
 * it are still on the device, and the store stays openable. (On a device with 4 KiB sectors the
 * header page is one sector, written whole or not at all.) Little-endian, in a 512-byte sector:
 *
 *   0  8  magic "PGRCYCLE"
 *   8 16  store id
 *  24  8  cycle number (float64)
 *  32  4  CRC-32C of bytes 0..31
 */
const MAGIC = Buffer.from('PGRCYCLE', 'latin1');
export const CYCLE_RECORD_BYTES = 512;
/** Byte positions of the three copies, inside the header page. */
const POSITIONS = [1024, 2048, 3072] as const;

/** Where cycle `cycle`'s record goes, and its bytes. */
export function cycleRecord(storeId: string, cycle: number): { position: number; bytes: Buffer } {
  const bytes = Buffer.alloc(CYCLE_RECORD_BYTES);
  MAGIC.copy(bytes, 0);
  Buffer.from(storeId, 'hex').copy(bytes, 8);
  bytes.writeDoubleLE(cycle, 24);
  bytes.writeUInt32LE(crc32c(bytes.subarray(0, 32)), 32);
  return { position: POSITIONS[cycle % POSITIONS.length], bytes };
}

/** The newest cycle the header page records for this store (0: none). A copy that fails its check is ignored. */
export function newestRecordedCycle(headerPage: Uint8Array, storeId: string): number {
  const page = Buffer.from(headerPage.buffer, headerPage.byteOffset, headerPage.byteLength);
  const id = Buffer.from(storeId, 'hex');
  let newest = 0;
  for (const at of POSITIONS) {
    const copy = page.subarray(at, at + CYCLE_RECORD_BYTES);
    if (!copy.subarray(0, 8).equals(MAGIC) || !copy.subarray(8, 24).equals(id)) continue;
    if (copy.readUInt32LE(32) !== crc32c(copy.subarray(0, 32))) continue;
    newest = Math.max(newest, copy.readDoubleLE(24));
  }
  return newest;
}

/**
 * Whether the device's newest cycle record and the metadata's last committed cycle can belong
 * together; if not, why (a message for the operator). A record goes to the device only once its
 * cycle's commit is durable: each cycle's data carries the record of the cycle committed before
 * it, and the store records the last one on its own once page-outs pause (and at a clean stop).
 * So the device never records a cycle the metadata has not committed, and lags it by at most two
 * (a cycle committed whose flush, carrying the record of the one before, was cut short). A
 * cycle whose flush failed keeps its number for the next one, so failures do not widen the gap;
 * the open writes the metadata's cycle to a device that lags, before any page-out. Anything else
 * means the metadata is older than the device (a lost or damaged -wal file, an older database
 * restored) or the device older than the metadata (an older device image): serving either would
 * serve stale pages as current.
 */
export function cycleMismatch(deviceCycle: number, metadataCycle: number): string | undefined {
  if (deviceCycle > metadataCycle) {
    return `the metadata is older than the device: its last committed page-out cycle is ${metadataCycle}, the device has recorded cycle ${deviceCycle} (a lost, deleted or damaged -wal file, or an older copy of the database restored)`;
  }
  if (deviceCycle < metadataCycle - 2) {
    return `the device is older than the metadata: the database committed page-out cycle ${metadataCycle}, the device records only cycle ${deviceCycle} (an older image of the device restored)`;
  }
  return undefined;
}

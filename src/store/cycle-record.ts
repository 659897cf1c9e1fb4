import { crc32c } from '../native/addon.js';

/**
 * The device's record of the page-out cycle committed last: written after each cycle's commit,
 * with its fdatasync, so the device says how far the metadata must have got. Three copies, in
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
 * together; if not, why (a message for the operator). A cycle's record goes to the device only
 * after its commit (page-writer.ts), so the device never records a cycle the metadata has not
 * committed, and lags it by at most one (a commit durable, its record and flush cut short; the
 * open-time check of unsynced cycles takes those pages back, and the open writes the metadata's
 * cycle to the device before any page-out, so a second crash finds the device no further
 * behind). A cycle whose flush failed keeps its number for the next one, so failures do not
 * widen the gap. Anything else means the metadata is older than the device (a lost or damaged
 * WAL, an older database restored) or the device older than the metadata (an older device
 * image): serving either would serve stale pages as current.
 */
export function cycleMismatch(deviceCycle: number, metadataCycle: number): string | undefined {
  if (deviceCycle > metadataCycle) {
    return `the metadata is older than the device: its last committed page-out cycle is ${metadataCycle}, the device has written cycle ${deviceCycle} (a lost, deleted or damaged -wal file, or an older copy of the database restored)`;
  }
  if (deviceCycle < metadataCycle - 1) {
    return `the device is older than the metadata: the database committed page-out cycle ${metadataCycle}, the device records only cycle ${deviceCycle} (an older image of the device restored)`;
  }
  return undefined;
}

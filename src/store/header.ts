import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * The on-disk header, in the first page of the device. Written once at format time and checked
 * at every open; a mismatch is refused, never repaired. Little-endian:
 *
 *   0  8  magic "PAGERD\0\1"
 *   8  4  format version
 *  12  4  page size
 *  16 16  store id (random; the metadata database records the same id)
 *  32  8  slot count (float64)
 *  40  8  created, ms since the epoch (float64)
 *  48  4  CRC-32 of bytes 0..47
 */
export const MAGIC = Buffer.from('PAGERD\0\x01', 'latin1');
/**
 * 3: the page map records seals, CRC-32C bound to the page's identity (meta/page-seal.ts).
 * 2: page checksums are plain CRC-32C (version 1 used zlib's CRC-32).
 */
export const FORMAT_VERSION = 3;
/** The oldest format this pagerd opens (and upgrades at open: its metadata migration seals the checksums). */
export const OLDEST_FORMAT_VERSION = 2;
/** Bytes read to tell a blank device, one of ours, or a foreign one. */
export const HEADER_PROBE_BYTES = 4096;

export interface StoreHeader {
  formatVersion: number;
  pageSize: number;
  storeId: string;
  slotCount: number;
  createdMs: number;
}

/** `damaged`: a pagerd header (its magic) that fails its checksum. */
export type HeaderProbe = { kind: 'blank' } | { kind: 'ours'; header: StoreHeader } | { kind: 'damaged' } | { kind: 'foreign'; why: string };

export function newHeader(pageSize: number, slotCount: number): StoreHeader {
  return { formatVersion: FORMAT_VERSION, pageSize, storeId: randomBytes(16).toString('hex'), slotCount, createdMs: Date.now() };
}

export function encodeHeader(h: StoreHeader): Buffer {
  const buf = Buffer.alloc(HEADER_PROBE_BYTES);
  MAGIC.copy(buf, 0);
  buf.writeUInt32LE(h.formatVersion, 8);
  buf.writeUInt32LE(h.pageSize, 12);
  Buffer.from(h.storeId, 'hex').copy(buf, 16);
  buf.writeDoubleLE(h.slotCount, 32);
  buf.writeDoubleLE(h.createdMs, 40);
  buf.writeUInt32LE(crc32(buf.subarray(0, 48)), 48);
  return buf;
}

/** Reads what the first bytes of a device hold. */
export function probeHeader(buf: Uint8Array): HeaderProbe {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.every((x) => x === 0)) return { kind: 'blank' };
  if (!b.subarray(0, 8).equals(MAGIC)) return { kind: 'foreign', why: 'it does not start with the pagerd magic' };
  if (b.readUInt32LE(48) !== crc32(b.subarray(0, 48))) return { kind: 'damaged' };
  const header: StoreHeader = {
    formatVersion: b.readUInt32LE(8),
    pageSize: b.readUInt32LE(12),
    storeId: b.subarray(16, 32).toString('hex'),
    slotCount: b.readDoubleLE(32),
    createdMs: b.readDoubleLE(40),
  };
  if (header.formatVersion < OLDEST_FORMAT_VERSION || header.formatVersion > FORMAT_VERSION) {
    return { kind: 'foreign', why: `its format version ${header.formatVersion} is not one this pagerd opens (${OLDEST_FORMAT_VERSION} to ${FORMAT_VERSION})` };
  }
  return { kind: 'ours', header };
}

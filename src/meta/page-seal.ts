/**
 * A page's seal: the checksum the page map records for it. It is the CRC-32C of the page's bytes
 * bound to whose bytes they are — the store, the segment and the page number — so a page-map
 * entry that points at the wrong slot (a row moved to another run or segment by a flipped bit, a
 * row from another store) fails its check even when that slot holds a good page. The binding is
 * an XOR with a hash of the identity: the bytes' CRC is still taken once, in the thread pool, as
 * the page is written, and a store of the earlier format is sealed without reading a slot.
 */
export class PageSeal {
  private readonly salt: number;

  constructor(storeId: string) {
    let salt = 0x9e3779b9;
    for (let i = 0; i + 8 <= storeId.length; i += 8) salt = mix(salt ^ Number.parseInt(storeId.slice(i, i + 8), 16));
    this.salt = salt;
  }

  /** The seal of page `pno` of segment `vmid` whose bytes have CRC-32C `crc`. */
  of(crc: number, vmid: number, pno: number): number {
    return (crc ^ this.identity(vmid, pno)) >>> 0;
  }

  /**
   * The seal of page-map row `run` of segment `vmid` whose entries have CRC-32C `crc`: a row
   * moved to another key, or changed in any bit, fails it. (Its own domain, so a row's seal is
   * never a page's.)
   */
  ofRow(crc: number, vmid: number, run: number): number {
    return (crc ^ mix(mix(mix(this.salt ^ ROW_DOMAIN) ^ vmid) ^ run)) >>> 0;
  }

  /** The seal of a segment's record (its fields in order), so a flipped owner or mode bit is seen. */
  ofRecord(fields: readonly number[]): number {
    let h = mix(this.salt ^ RECORD_DOMAIN);
    for (const field of fields) h = mix(h ^ (field >>> 0) ^ mix(Math.floor(field / 2 ** 32) >>> 0));
    return h;
  }

  /** The hash the seal XORs into the CRC (so of(of(crc, v, p), v, p) === crc). */
  private identity(vmid: number, pno: number): number {
    return mix(mix(this.salt ^ vmid) ^ pno);
  }
}

/** A seal that does not match: the metadata it covers was changed outside pagerd. */
export class BrokenSealError extends Error {
  constructor(
    readonly what: string,
    why = 'fails its seal',
  ) {
    super(`${what} ${why}: changed outside pagerd (a flipped bit, a hand edit)`);
    this.name = 'BrokenSealError';
  }
}

const ROW_DOMAIN = 0x526f7773; // 'Rows'
const RECORD_DOMAIN = 0x53656773; // 'Segs'

/** murmur3's 32-bit finalizer: every input bit flips about half the output bits. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

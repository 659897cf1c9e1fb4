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

  /** The hash the seal XORs into the CRC (so of(of(crc, v, p), v, p) === crc). */
  private identity(vmid: number, pno: number): number {
    return mix(mix(this.salt ^ vmid) ^ pno);
  }
}

/** murmur3's 32-bit finalizer: every input bit flips about half the output bits. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The layout of the shared frame pool: the memory the daemon's frames live in, which trusted local
 * clients map read-only to copy resident pages without a round trip. Both sides build their
 * views from the header, so the daemon may place things as it likes within a version.
 *
 *   header     u32 words (HeaderWord), at byte 0
 *   frame table the daemon's frame records (src/vm/frame-layout.ts); clients read `vmid` and `pno`
 *   seq        u32 per frame: odd while the frame's bytes or owner may change or it holds no
 *              usable page, even while both are stable (a seqcount: readers copy, then check it
 *              did not move)
 *   directory  buckets of BUCKET_ENTRIES u32 (frame + 1, 0: empty): where a resident page's frame
 *              is, found by bucketOf(vmid, pno); a page not listed is read through the socket
 *   frames     page-sized, from a page-aligned offset
 *
 * The access map is a second, writable mapping: a byte per frame that a client sets when it
 * copies from the frame, which the clock hand reads as a reference (and clears).
 */
export const SHARED_FRAMES_MAGIC = 0x52464750; // "PGFR"
export const SHARED_FRAMES_VERSION = 1;

export const HeaderWord = {
  MAGIC: 0,
  VERSION: 1,
  PAGE_SIZE: 2,
  COUNT: 3,
  BUCKETS: 4,
  /** Byte offsets of the arrays. */
  SEQ: 5,
  VMID: 6,
  PNO: 7,
  DIRECTORY: 8,
  FRAMES: 9,
} as const;

export const HEADER_BYTES = 64;
/** Entries per directory bucket: a page whose bucket is full is simply not listed. */
export const BUCKET_ENTRIES = 8;

/** The directory bucket of page `pno` of segment `vmid` (murmur3's finalizer over both). */
export function bucketOf(vmid: number, pno: number, buckets: number): number {
  let h = Math.imul(vmid ^ 0x9e3779b9, 0x85ebca6b) ^ pno;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) % buckets;
}

/**
 * Directory buckets for `count` frames: four entries per frame, in buckets of 8, so that even with
 * every frame in use a bucket overflows rarely (a Poisson mean of 2 per bucket: about 1 page in
 * 1,000 is not listed).
 */
export function bucketsFor(count: number): number {
  return Math.max(1, Math.ceil((4 * count) / BUCKET_ENTRIES));
}

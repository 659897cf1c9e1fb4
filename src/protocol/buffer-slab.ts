/** Bytes in one slab. */
const SLAB_BYTES = 256 * 1024;
/** Larger buffers get their own allocation: they would waste most of a slab. */
const MAX_CARVED = 64 * 1024;

let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let used = 0;

/**
 * An unzeroed buffer carved from a shared 256 KiB slab. Node pools only buffers under 4 KiB, and
 * a fresh ArrayBuffer costs ~3 µs here — more than the rest of a 4 KiB move. Messages and page
 * copies (4 KiB and up) are carved instead; a slab is freed by the GC once no buffer carved from
 * it is referenced, so callers must not keep these for long (frames in flight, replies to write).
 */
export function allocBuffer(size: number): Buffer {
  if (size > MAX_CARVED) return Buffer.allocUnsafeSlow(size);
  if (used + size > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    used = 0;
  }
  const out = slab.subarray(used, used + size);
  used = (used + size + 7) & ~7; // 8-byte aligned, for typed-array views
  return out;
}

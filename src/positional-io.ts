import type { FileHandle } from 'node:fs/promises';

/**
 * Reads `into.length` bytes at `position`, looping over short reads; answers the bytes read,
 * fewer only at the end of the file (the rest of `into` is left as it was).
 */
export async function readFully(file: FileHandle, into: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await file.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** The first `length` bytes of `pieces`, as views of them. RangeError if they hold fewer. */
export function leadingBytes(pieces: readonly Uint8Array[], length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = length;
  for (let i = 0; i < pieces.length && left > 0; i++) {
    out.push(pieces[i].length <= left ? pieces[i] : pieces[i].subarray(0, left));
    left -= out[out.length - 1].length;
  }
  if (left > 0) throw new RangeError(`${length} bytes asked of pieces holding fewer`);
  return out;
}

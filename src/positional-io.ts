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

/** Writes all of `data` at `position`, looping over short writes. */
export async function writeFully(file: FileHandle, data: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await file.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** Writes the first `length` bytes of `pieces`, in order, at `position` (pwritev), looping over short writes. RangeError if the pieces hold fewer. */
export async function writevFully(file: FileHandle, pieces: readonly Uint8Array[], position: number, length: number): Promise<void> {
  const rest: Uint8Array[] = [];
  let left = length;
  for (let i = 0; i < pieces.length && left > 0; i++) {
    rest.push(pieces[i].subarray(0, left));
    left -= rest[rest.length - 1].length;
  }
  if (left > 0) throw new RangeError(`${length} bytes asked of pieces holding fewer`);
  for (let done = 0; done < length; ) {
    const { bytesWritten } = await file.writev(rest, position + done);
    done += bytesWritten;
    // A short write: drop what was written, from the front.
    for (let skip = bytesWritten; skip > 0; ) {
      if (rest[0].length <= skip) skip -= rest.shift()!.length;
      else {
        rest[0] = rest[0].subarray(skip);
        skip = 0;
      }
    }
  }
}

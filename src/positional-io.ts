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

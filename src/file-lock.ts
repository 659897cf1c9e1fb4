/**
 * Takes an exclusive flock on `fd` without waiting: true if taken, false if another open file
 * holds one (another pagerd on a store, another map-file on a file). fs-ext is loaded on first
 * use: the client library loads no native module a client that serves no file does not need.
 */
export async function lockExclusive(fd: number): Promise<boolean> {
  const { default: fsExt } = await import('fs-ext');
  try {
    fsExt.flockSync(fd, 'exnb');
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return false;
    throw err;
  }
}

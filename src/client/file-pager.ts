import { open, stat } from 'node:fs/promises';
import { V_CLIENT } from '../constants.js';
import { GroupCommit } from '../group-commit.js';
import { lockExclusive } from '../file-lock.js';
import { readFully, writeFully, writevFully } from '../positional-io.js';
import { readCached } from '../native/addon.js';
import type { PagerClient, StrategyRequest } from './client.js';

/** The `code` of serveFile's error for a path that is not a regular file (a device, a directory, /dev/null). */
export const NOT_A_REGULAR_FILE = 'ENOTREGULAR';
/** The `code` of serveFile's error for a file another serveFile (another map-file) serves already. */
export const FILE_IN_USE = 'EBUSY';

/** A regular file served as a client segment: its vmid and paging device, and how to stop. */
export interface FilePager {
  vmid: number;
  device: number;
  /** The file's size: the segment's extent, rounded up to whole pages. */
  size: number;
  /** Strategy requests served so far. */
  readonly served: { reads: number; writes: number; datasyncs: number };
  /** Resolves once no strategy request is being served (its reads and writes of the file are done). */
  idle(): Promise<void>;
  /** Pages out every modified page (durable in the file), deletes the segment, unmounts, closes the file. A write racing the delete itself is lost. */
  stop(): Promise<void>;
}

/**
 * The reference client file system: one regular file served as a client segment through a
 * strategy routine. Page-ins are positional reads (zeros past the end of the file); page-outs are
 * positional writes that never extend the file past its size, each made durable by an fdatasync
 * before it resolves (writes answered while one runs share the next: group commit). The file's
 * guarantees are its own: an in-place write can tear on power loss, as any file write can. With
 * `sharedFrames`, page-outs come by frame reference where the daemon offers them (vmMounte's
 * MountOptions): then `client`'s own writes of a page being written out answer EDEADLK.
 */
export async function serveFile(client: PagerClient, path: string, options: { mode?: number; sharedFrames?: boolean } = {}): Promise<FilePager> {
  // Looked at before it is opened: opening a device node can have effects of its own.
  if (!(await stat(path)).isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: NOT_A_REGULAR_FILE });
  const file = await open(path, 'r+');
  try {
    // One server per file: two segments caching one file would each write back whole pages of it,
    // the older bytes of one over a newer acknowledged write of the other. (Advisory: a program
    // writing the file by itself meanwhile is not stopped.)
    if (!(await lockExclusive(file.fd))) throw Object.assign(new Error(`${path} is served already (another map-file holds its lock)`), { code: FILE_IN_USE });
    const size = (await file.stat()).size;
    const syncs = new GroupCommit();
    const served = { reads: 0, writes: 0, datasyncs: 0 };
    const pageSize = client.pageSize;
    let serving = 0;
    const idleWaiters: (() => void)[] = [];
    const serve = async (io: StrategyRequest): Promise<void> => {
      const at = io.page * pageSize;
      if (io.op === 'read') {
        served.reads++;
        // What the page cache holds is read at once (no trip through the thread pool); the rest
        // waits for the device. Past the end of the file: the zeros the buffer came with.
        const cached = Math.max(0, readCached(file.fd, io.data, at));
        if (cached === io.data.length || at + cached >= size) return;
        await readFully(file, io.data.subarray(cached), at + cached);
        return;
      }
      served.writes++;
      const length = Math.max(0, Math.min(io.npages * pageSize, size - at));
      // Pages in the daemon's frames are written from where they lie (no copy into one buffer).
      if (io.pages !== undefined) await writevFully(file, io.pages, at, length);
      else await writeFully(file, io.data.subarray(0, length), at);
      await syncs.request(() => {
        served.datasyncs++;
        return file.datasync();
      });
    };
    const strategy = async (io: StrategyRequest): Promise<void> => {
      serving++;
      try {
        await serve(io);
      } finally {
        if (--serving === 0) for (const wake of idleWaiters.splice(0)) wake();
      }
    };
    const device = await client.vmMounte(strategy, { sharedFrames: options.sharedFrames === true });
    const vmid = await client.vmsCreate(V_CLIENT, size, { device, mode: options.mode ?? 0o600 });
    const pages = Math.ceil(size / pageSize);
    // The file (and its lock) is let go when the stop is over, or once the connection has closed
    // and the last request is served: another server may then take the file.
    let closing: Promise<void> | undefined;
    const close = (): Promise<void> => (closing ??= file.close());
    void client.closed().then(async () => {
      while (serving > 0) await new Promise<void>((resolve) => idleWaiters.push(resolve));
      await close();
    });
    return {
      vmid,
      device,
      size,
      served,
      idle: () => (serving === 0 ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve))),
      async stop() {
        // Until a round finds nothing modified and no page-out completed meanwhile (vm_qmodify):
        // writes of other clients during the stop are written too, all but a last instant's. A
        // failure heard may be an earlier page-out's (the file system full then): its pages stay
        // modified and the next round writes them again; three failed rounds in a row end the stop.
        for (let round = 0, failedInARow = 0; round < 100; round++) {
          if (pages > 0) await client.vmWritep(vmid, 0, pages);
          try {
            await client.vmsIowait(vmid);
            failedInARow = 0;
          } catch (err) {
            if (++failedInARow === 3) throw err;
            continue;
          }
          if (!(await client.vmQmodify(vmid))) break;
        }
        await client.vmsDelete(vmid);
        await client.vmUmount(device);
        await close();
      },
    };
  } catch (err) {
    await file.close();
    throw err;
  }
}

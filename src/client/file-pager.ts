import { open, stat } from 'node:fs/promises';
import { V_CLIENT, V_STRATEGY } from '../constants.js';
import { lockExclusive } from '../file-lock.js';
import { leadingBytes, readFully } from '../positional-io.js';
import { SyncedWrites } from './synced-writes.js';
import { fileAttribute, readCached, setFileAttribute } from '../native/addon.js';
import type { PagerClient, SegmentInfo, StrategyRequest } from './client.js';
import type { PagerError } from '../errors.js';

/** The `code` of serveFile's error for a path that is not a regular file (a device, a directory, /dev/null). */
export const NOT_A_REGULAR_FILE = 'ENOTREGULAR';
/** The `code` of serveFile's error for a file another serveFile (another map-file) serves already. */
export const FILE_IN_USE = 'EBUSY';
/** The `code` of serveFile's error for a segment to adopt that is not a client segment of the file's size (or not visible). */
export const NOT_THE_FILES_SEGMENT = 'ESEGMENT';
/** The `code` of serveFile's error for a segment to adopt that a live paging device serves (another map-file, say). */
export const SEGMENT_IN_USE = 'ESEGMENTBUSY';
/** The `code` of the error a file pager's stop (and onLost) gives once its segment was taken from it. */
export const SEGMENT_TAKEN = 'ESEGMENTTAKEN';
/** The `code` of serveFile's error for a file whose segment of an earlier file pager is still there (to adopt, or delete). */
export const FILE_HAS_SEGMENT = 'EFILESEGMENT';

/**
 * The extended attribute naming the segment that caches a file: `store:vmid:uid:inode:birth`, the
 * daemon's store (stats `store`), the segment and its owner, and the file it was recorded on, by
 * inode and birth time (ns; 0 where the file system keeps none): a copy of the file carries the
 * attribute, not the identity, and the file keeps both when its file system is mounted again,
 * on another device number. Set while a file pager serves the file, removed when
 * its stop deletes the segment. One left behind names a segment whose file system went away,
 * maybe with modified pages: a new segment of the file would be a second cache of it, and
 * adopting the old one later would write its older pages over the newer ones.
 */
const SEGMENT_ATTRIBUTE = 'user.pagerd.segment';

/** How often a file pager looks whether its paging device is still alive (strategy.timeoutMs fails one that did not answer in time). */
const DEVICE_CHECK_MS = 1000;

/** A regular file served as a client segment: its vmid and paging device, and how to stop. */
export interface FilePager {
  vmid: number;
  /** The paging device serving it now. */
  readonly device: number;
  /** The file's size: the segment's extent, rounded up to whole pages. */
  size: number;
  /** Strategy requests served so far. */
  readonly served: { reads: number; writes: number; datasyncs: number };
  /**
   * Why the segment is not recorded in the file (its file system refused the attribute, or keeps
   * none), if it is not: a later file pager of the file cannot know of this segment then.
   */
  readonly unrecorded: Error | undefined;
  /** Paging devices mounted again after the daemon failed one (its strategy did not answer within strategy.timeoutMs). */
  readonly remounts: number;
  /** Resolves once no strategy request is being served (its reads and writes of the file are done). */
  idle(): Promise<void>;
  /**
   * Pages out every modified page (durable in the file), deletes the segment, unmounts, closes the
   * file. A write racing the delete itself is lost. Rejects (code SEGMENT_TAKEN) once the segment
   * was taken from it, and touches it no more.
   */
  stop(): Promise<void>;
}

export interface FilePagerOptions {
  /** Permission bits of a segment it creates (default 0600). */
  mode?: number;
  /** Page-outs by frame reference, where the daemon offers them. */
  sharedFrames?: boolean;
  /** Adopt this client segment instead of creating one. */
  vmid?: number;
  /** Told when a failed device was replaced by a new one. */
  onRemount?: (failed: number, mounted: number) => void;
  /** Told (once) when the segment was taken from it: rebound to another device, or deleted. It serves it no more. */
  onLost?: (reason: Error) => void;
  /** Told when the pages an adopted segment held could not all be written at once (they stay modified, written again later). */
  onAdoptedNotWritten?: (reason: Error) => void;
}

/**
 * The reference client file system: one regular file served as a client segment through a
 * strategy routine. Page-ins are positional reads (zeros past the end of the file); page-outs are
 * positional writes that never extend the file past its size, each made durable by an fdatasync
 * before it resolves (writes answered while one runs share the next: group commit). The file's
 * guarantees are its own: an in-place write can tear on power loss, as any file write can. With
 * `sharedFrames`, page-outs come by frame reference where the daemon offers them (vmMounte's
 * MountOptions): then `client`'s own writes of a page being written out answer EDEADLK.
 *
 * With `vmid`, it adopts that client segment (one whose file system went away: its modified pages
 * are written to this file) instead of creating one: it must be a client segment paged by a
 * strategy routine, of the file's size rounded up to pages. A device the daemon fails while the
 * connection stays open (this process was stopped, or too slow, past strategy.timeoutMs) is
 * replaced: it mounts a new one and rebinds the segment to it.
 */
export async function serveFile(client: PagerClient, path: string, options: FilePagerOptions = {}): Promise<FilePager> {
  // Looked at before it is opened: opening a device node can have effects of its own.
  if (!(await stat(path)).isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: NOT_A_REGULAR_FILE });
  const file = await open(path, 'r+');
  try {
    // One server per file: two segments caching one file would each write back whole pages of it,
    // the older bytes of one over a newer acknowledged write of the other. (Advisory: a program
    // writing the file by itself meanwhile is not stopped.)
    if (!(await lockExclusive(file.fd))) throw Object.assign(new Error(`${path} is served already (another map-file holds its lock)`), { code: FILE_IN_USE });
    const { size: bigSize, ino, birthtimeNs } = await file.stat({ bigint: true });
    const size = Number(bigSize);
    const syncs = new SyncedWrites(file.fd);
    const served = {
      reads: 0,
      writes: 0,
      get datasyncs() {
        return syncs.syncs;
      },
    };
    const pageSize = client.pageSize;
    const serving = new InService();
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
      await syncs.write(at, leadingBytes(io.pages ?? [io.data], length));
    };
    const strategy = async (io: StrategyRequest): Promise<void> => {
      serving.enter();
      try {
        await serve(io);
      } finally {
        serving.leave();
      }
    };
    const pages = Math.ceil(size / pageSize);
    const store = String((await client.stats()).store);
    const recordOf = (vmid: number, uid: number): string => `${store}:${vmid}:${uid}:${ino}:${birthtimeNs}`;
    // The adopted segment's owner, and the device it is bound to (0: none): it is taken over only from that one.
    const segments = await client.segments();
    const adopted = options.vmid === undefined ? undefined : checkAdoptable(segments, options.vmid, pages * pageSize);
    checkRecordedSegment(segments, path, recordedSegment(file.fd, recordOf), pages * pageSize, options.vmid);
    const mount = (): Promise<number> => client.vmMounte(strategy, { sharedFrames: options.sharedFrames === true });
    let device = await mount();
    let remounts = 0;
    const vmid =
      options.vmid ??
      (await client.vmsCreate(V_CLIENT, size, { device, mode: options.mode ?? 0o600 }).catch(async (err: unknown) => {
        await client.vmUmount(device).catch(() => undefined);
        throw err;
      }));
    if (options.vmid !== undefined) {
      await client.vmSetdevid(vmid, device, { from: adopted!.device }).catch(async (err: unknown) => {
        await client.vmUmount(device).catch(() => undefined);
        if ((err as PagerError).reason !== 'segment-rebound') throw err;
        throw Object.assign(new Error(`segment ${vmid} was taken over by another program as this one adopted it`), { code: SEGMENT_IN_USE });
      });
      // What it held modified, to the file now.
      const written = pages > 0 ? client.vmWritep(vmid, 0, pages).then(() => client.vmsIowait(vmid)) : Promise.resolve();
      written.catch((err: unknown) => options.onAdoptedNotWritten?.(err as Error));
    }
    const unrecorded = recordSegment(file.fd, recordOf(vmid, adopted?.uid ?? process.getuid!()));
    // A device failed under an open connection serves nothing more: its segment is bound to a new
    // one. A segment no longer bound to a device of ours was taken (rebound by another program,
    // or deleted; the daemon forgets a failed device once nothing is bound to it): left alone.
    let checking: Promise<void> = Promise.resolve();
    let checksQueued = 0;
    let lost: Error | undefined;
    const keptBy = (why: Error): void => {
      lost = Object.assign(new Error(`segment ${vmid} was taken from this file pager (rebound by another program, or deleted): ${why.message}`), { code: SEGMENT_TAKEN });
      clearInterval(watch);
      options.onLost?.(lost);
    };
    const keepDevice = (): Promise<void> => {
      checksQueued++;
      return (checking = checking.catch(() => undefined).then(async () => {
        checksQueued--;
        if (lost !== undefined) return;
        const mine = (await client.devices()).find((d) => d.id === device);
        if (mine === undefined || !mine.segments.includes(vmid)) return keptBy(new Error('not bound to its device any more'));
        if (mine.alive) return;
        // The failed device's writes first: one stalled past the timeout would otherwise land after
        // a newer write of its pages through the new device. (It gets no new ones; the next is not bound yet.)
        await syncs.idle();
        const fresh = await mount();
        try {
          // Only from the failed device: one that adopted the segment meanwhile keeps it.
          await client.vmSetdevid(vmid, fresh, { from: device });
        } catch (err) {
          await client.vmUmount(fresh).catch(() => undefined);
          if ((err as PagerError).reason === 'segment-rebound') return keptBy(err as Error);
          throw err;
        }
        const failed = device;
        device = fresh;
        remounts++;
        options.onRemount?.(failed, device);
        await client.vmUmount(failed).catch(() => undefined); // gone already once no segment is bound to it
      }));
    };
    // A look while one is queued or waiting (for a stalled write, say) would only pile up behind it.
    const watch = setInterval(() => checksQueued === 0 && keepDevice().catch(() => undefined), DEVICE_CHECK_MS).unref();
    // The file (and its lock) is let go when the stop is over, or once the connection has closed
    // and the last request is served: another server may then take the file.
    let closing: Promise<void> | undefined;
    const close = (): Promise<void> => (closing ??= syncs.idle().then(() => file.close()));
    void client.closed().then(async () => {
      clearInterval(watch);
      await serving.idle();
      await close();
    });
    return {
      vmid,
      get device() {
        return device;
      },
      get remounts() {
        return remounts;
      },
      size,
      served,
      unrecorded,
      idle: () => serving.idle(),
      async stop() {
        // Until a round finds nothing modified and no page-out completed meanwhile (vm_qmodify):
        // writes of other clients during the stop are written too, all but a last instant's. A
        // failure heard may be an earlier page-out's (the file system full then): its pages stay
        // modified and the next round writes them again; three failed rounds in a row end the stop.
        clearInterval(watch);
        for (let round = 0, failedInARow = 0; round < 100; round++) {
          await keepDevice();
          if (lost !== undefined) throw lost;
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
        // Only while still bound to this device: a segment taken meanwhile is not deleted.
        await client.vmsDelete(vmid, { from: device }).catch((err: unknown) => {
          if ((err as PagerError).reason === 'segment-rebound') keptBy(err as Error);
          throw lost ?? err;
        });
        recordSegment(file.fd, undefined);
        await client.vmUmount(device);
        await close();
      },
    };
  } catch (err) {
    await file.close();
    throw err;
  }
}

/**
 * The segment the file records (SEGMENT_ATTRIBUTE) and its owner, if the record is this store's
 * and this file's (`recordOf` makes the record a segment would have); undefined otherwise, or if
 * it cannot be read.
 */
function recordedSegment(fd: number, recordOf: (vmid: number, uid: number) => string): { vmid: number; uid: number } | undefined {
  let record: string | undefined;
  try {
    record = fileAttribute(fd, SEGMENT_ATTRIBUTE)?.toString();
  } catch {
    return undefined; // unreadable: the file is served without the safeguard
  }
  const [vmid, uid] = (record ?? '').split(':').slice(1, 3).map(Number);
  return Number.isSafeInteger(vmid) && Number.isSafeInteger(uid) && record === recordOf(vmid, uid) ? { vmid, uid } : undefined;
}

/**
 * Refuses a file whose recorded segment is still there, a client segment of its extent, unless
 * that is the segment to adopt: to create another, or adopt a different one. A record naming a
 * segment its owner or root cannot see (deleted since) is ignored; one another uid cannot see
 * may be a segment it may not see, and is refused too.
 */
function checkRecordedSegment(segments: readonly SegmentInfo[], path: string, record: { vmid: number; uid: number } | undefined, extent: number, adopting: number | undefined): void {
  if (record === undefined || record.vmid === adopting) return;
  const recorded = record.vmid;
  const segment = segments.find((s) => s.vmid === recorded);
  if (segment === undefined && (process.getuid!() === 0 || process.getuid!() === record.uid)) return;
  if (segment !== undefined && ((segment.options & V_STRATEGY) === 0 || segment.extent !== extent)) return;
  const what =
    segment === undefined
      ? `${path} records segment ${recorded}, which this uid cannot see: another uid's (its owner, or root, can adopt or delete it), or deleted since (then remove the file's ${SEGMENT_ATTRIBUTE} attribute)`
      : adopting !== undefined
        ? `${path} is cached by segment ${recorded}, not ${adopting}: adopt that one (--vmid ${recorded})`
        : `${path} is still cached by segment ${recorded} (its file pager went away, maybe with modified pages): adopt it (--vmid ${recorded}) to write them, or delete it (pagerctl segments delete ${recorded}) to drop them`;
  throw Object.assign(new Error(what), { code: adopting !== undefined ? NOT_THE_FILES_SEGMENT : FILE_HAS_SEGMENT });
}

/**
 * Records (or, with undefined, forgets) the file's segment where its file system lets it: a
 * record is a safeguard, not needed to serve. Answers why a record could not be made.
 */
function recordSegment(fd: number, record: string | undefined): Error | undefined {
  try {
    if (setFileAttribute(fd, SEGMENT_ATTRIBUTE, record === undefined ? null : Buffer.from(record)) || record === undefined) return undefined;
    return new Error('its file system keeps no extended attributes');
  } catch (err) {
    return err as Error; // refused: a full file system, an immutable file
  }
}

/** Strategy requests being served now, and who waits until none is. */
class InService {
  private count = 0;
  private readonly waiters: (() => void)[] = [];

  enter(): void {
    this.count++;
  }

  leave(): void {
    if (--this.count === 0) for (const wake of this.waiters.splice(0)) wake();
  }

  /** Resolves once none is being served (at once if none is). */
  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

/**
 * Refuses to adopt a segment a live device serves, or one that is not a visible client segment
 * paged by a strategy routine, of `extent` bytes; answers the device it is bound to (0: none),
 * and its owner.
 */
function checkAdoptable(segments: readonly SegmentInfo[], vmid: number, extent: number): { device: number; uid: number } {
  const segment = segments.find((s) => s.vmid === vmid);
  if (segment?.deviceLive === true) throw Object.assign(new Error(`segment ${vmid} is served by live paging device ${segment.device} (another map-file?): stop that one first`), { code: SEGMENT_IN_USE });
  const why =
    segment === undefined
      ? 'no such segment is visible'
      : (segment.options & V_STRATEGY) === 0
        ? 'it is not a client segment paged by a strategy routine'
        : segment.extent !== extent
          ? `its extent is ${segment.extent} bytes, the file's is ${extent} (its size rounded up to pages)`
          : undefined;
  if (why !== undefined) throw Object.assign(new Error(`segment ${vmid} cannot serve this file: ${why}`), { code: NOT_THE_FILES_SEGMENT });
  return { device: segment!.device ?? 0, uid: segment!.uid };
}

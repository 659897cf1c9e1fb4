import type { Logger } from 'pino';
import { PagerError, errnoName } from '../errors.js';
import { encodeStrategyWriteByReference, strategyIoFrameParts, type StrategyDone } from '../protocol/codec.js';
import { copyBytes } from '../copy-bytes.js';
import { RecycledBuffers } from '../protocol/recycled-buffers.js';

/** The connection that mounted a device: its peer's uid, and how to send it a strategy request. */
export interface DeviceOwner {
  readonly uid: number;
  /** The connection's client context (whose waits on its own strategy answer EDEADLK). */
  readonly context: object;
  /**
   * The connection's peer process, where it is trusted with the shared frames (it may be sent
   * writes by frame reference): frames it was told to read are held for it until it answers, or
   * exits.
   */
  readonly reader: FrameReader | undefined;
  /** Writes a frame given as parts; `written` once they are all handed on (or the connection is gone). */
  send(parts: readonly Uint8Array[], written: () => void): void;
  /** Closes the connection: it stopped reading what it was sent (whose bytes may be pinned frames). */
  drop(): void;
}

/** A process that maps the shared frames: whether it has exited; held while the table may still ask. */
export interface FrameReader {
  exited(): boolean;
  hold(): void;
  letGo(): void;
}

/** Holding frames' bytes as they are (the engine's: writers of their pages wait meanwhile). */
export interface FramePins {
  pinFrame(frame: number): void;
  unpinFrame(frame: number): void;
  /** A pin is now a failed device's: its page moves to another frame rather than make a writer wait (Vmm.orphanFrame). */
  orphanFrame(frame: number): void;
  /** Lets go a pin orphanFrame made a failed device's. */
  unpinOrphan(frame: number): void;
}

export interface PagingDeviceLimits {
  /** Strategy requests one device has unanswered at once; more wait in its queue. */
  maxInFlight: number;
  /** A request unanswered this long fails with EIO (device-gone). */
  timeoutMs: number;
  /**
   * Most frames lent to file systems by frame reference at once, all devices together: in writes
   * at the file system, and held for failed devices' unanswered ones. Past it page-outs go as bytes.
   */
  maxLentFrames: number;
}

/** How often the table looks whether processes that frames are held for have exited. */
const ORPHAN_SWEEP_MS = 1000;

const NO_PAGES: readonly Uint8Array[] = [];
/** Bytes of copy buffers kept for reuse (the requests in flight of a device, 16 of 256 KiB, four times over). */
const COPY_BUFFERS_KEPT_BYTES = 16 * 1024 * 1024;

/** One strategy request: sent, or queued behind the device's in-flight limit. (A class: one shape, set once.) */
class Pending {
  id = 0;
  /**
   * The request's frame as parts: its head, then a write's pages. Sent at once, the pages go from
   * the frames themselves, pinned until the socket has taken them. Queued, the frames are let go
   * at once (a writer of those pages, the strategy itself maybe, must not wait on the file
   * system's answers) and what they hold when the request is sent is copied into `copy`: a page
   * written meanwhile goes out newer, which its next page-out writes again anyway.
   */
  parts: readonly Uint8Array[] = NO_PAGES;
  /**
   * A write by frame reference (a device reading shared frames): the frames holding its pages.
   * They are pinned from the moment it is sent until the strategy answers (late, if its device failed) or its process exits:
   * the file system reads them then, from its own mapping. Queued, they are not held.
   */
  frames: readonly number[] | undefined = undefined;
  pinned = false;
  /** Its frames count against maxLentFrames (from the moment it was made a write by frame reference until they are let go). */
  lent = false;
  queued = false;
  copy: Buffer | undefined = undefined;
  timer: NodeJS.Timeout | undefined = undefined;
  resolve: () => void = () => {};
  reject: (err: PagerError) => void = () => {};
  /** Called once the request no longer reads its frames: written to the socket, copied, or never to be sent. */
  released: () => void = () => {};
  /** Sent, and all of it taken by the socket. */
  written = false;

  constructor(
    readonly op: 'read' | 'write',
    readonly vmid: number,
    readonly page: number,
    readonly npages: number,
    /** Where a read's bytes go. */
    readonly into: Uint8Array | undefined,
  ) {}
}

/** A write's two moments: its pages' bytes no longer read (captured), and durable at the file system (complete). */
export interface StrategyWrite {
  captured: Promise<void>;
  complete: Promise<void>;
}

export interface Device {
  readonly id: number;
  readonly owner: DeviceOwner;
  /** Its writes go by frame reference (its owner maps the shared frames). */
  readonly byReference: boolean;
  alive: boolean;
  readonly inFlight: Map<number, Pending>;
  readonly queue: Pending[];
  /** Segments bound to it. */
  readonly segments: Set<number>;
  /** Wakes vmUmount once nothing is in flight or queued. */
  drained: (() => void)[];
  requests: number;
  /** Requests sent whose bytes the socket has not all taken yet. */
  unwritten: number;
}

/**
 * The paging device table (AIX's PDT, for client file systems): devices mounted by connections
 * whose strategy routine pages the client segments bound to them. A device sends at most
 * maxInFlight requests at once (a slow file system slows its own segments only; the rest wait in
 * its queue, holding only frames the engine already counts); a request unanswered within
 * timeoutMs, or on a device whose connection closed, fails with EIO. Every answer is checked: an
 * unknown id or a read of the wrong size never reaches a frame.
 */
export class PagingDevices {
  private readonly devices = new Map<number, Device>();
  private readonly byVmid = new Map<number, Device>();
  private nextDevice = 1;
  private nextRequest = 1;
  /** Buffers of queued writes' copies, handed back once written. */
  private readonly copies = new RecycledBuffers(COPY_BUFFERS_KEPT_BYTES);
  /**
   * Writes by frame reference whose device failed before they were answered, by the process they
   * were sent to and request id. It may still be reading their frames (a write stalled in its
   * thread pool, a process stopped): they stay pinned until its answer comes late (on any of its
   * connections), or it exits. Their pages move to other frames when written (Vmm.movePage), so
   * nobody waits for that.
   */
  private readonly orphans = new Map<FrameReader, { uid: number; requests: Map<number, Pending> }>();
  private orphanSweep: NodeJS.Timeout | undefined;
  /** Frames lent by frame reference now (maxLentFrames). */
  private lentFrames = 0;

  constructor(
    private readonly pageSize: number,
    private readonly limits: PagingDeviceLimits,
    private readonly log: Logger,
    private readonly pins: FramePins,
  ) {}

  /** vm_mounte: a new device served by `owner`'s strategy routine (its writes by frame reference if `byReference`); answers its id. */
  mount(owner: DeviceOwner, byReference = false): number {
    const id = this.nextDevice++;
    this.devices.set(id, { id, owner, byReference, alive: true, inFlight: new Map(), queue: [], segments: new Set(), drained: [], requests: 0, unwritten: 0 });
    this.log.info({ device: id, uid: owner.uid, byReference }, 'paging device mounted');
    return id;
  }

  /** vm_umount: removes a device of `owner` once its I/O has drained; EBUSY while segments are bound to it. */
  async umount(owner: DeviceOwner, id: number): Promise<void> {
    const device = this.devices.get(id);
    if (device === undefined || device.owner !== owner) throw new PagerError('no-such-device');
    if (device.segments.size > 0) throw new PagerError('device-busy', `${device.segments.size} segments are bound to device ${id}`);
    if (device.inFlight.size > 0 || device.queue.length > 0) await new Promise<void>((resolve) => device.drained.push(resolve));
    if (device.segments.size > 0) throw new PagerError('device-busy', `segments were bound to device ${id} while its I/O drained`);
    this.devices.delete(id);
    this.log.info({ device: id }, 'paging device unmounted');
  }

  /**
   * Binds segment `vmid` (owned by `segmentUid`) to device `id` (vm_setdevid, and at creation):
   * the device must be live and mounted by a connection of the segment owner's uid (or of root,
   * when root binds it), so no client makes another uid's file system serve or receive its pages. I/O already sent completes on the
   * old device; later I/O goes to the new one.
   */
  bind(vmid: number, segmentUid: number, id: number, byRoot = false): void {
    const device = this.bindable(id, segmentUid, byRoot);
    this.unbind(vmid);
    device.segments.add(vmid);
    this.byVmid.set(vmid, device);
  }

  /**
   * Device `id` if a segment of uid `segmentUid` may be bound to it: live, and mounted by a
   * connection of that uid, or (when root binds, `byRoot`) of root.
   */
  bindable(id: number, segmentUid: number, byRoot = false): Device {
    const device = this.devices.get(id);
    const mayServe = device !== undefined && (device.owner.uid === segmentUid || (byRoot && device.owner.uid === 0));
    if (!mayServe || !device.alive) throw new PagerError('no-such-device', `no live paging device ${id} of uid ${segmentUid}${byRoot ? ' or root' : ''}`);
    return device;
  }

  /** The segment is gone (deleted), or bound elsewhere. */
  unbind(vmid: number): void {
    const device = this.byVmid.get(vmid);
    if (device === undefined) return;
    this.byVmid.delete(vmid);
    device.segments.delete(vmid);
    this.forgetIfUnused(device);
  }

  /** Reads pages [page, page + npages) of `vmid` into `into` through its device's strategy. */
  read(vmid: number, page: number, npages: number, into: Uint8Array): Promise<void> {
    return this.submit(new Pending('read', vmid, page, npages, into), NO_PAGES);
  }

  /**
   * Writes `pages` (each a page's frame bytes, held in `frames`) as pages [page, page +
   * pages.length) of `vmid`. The bytes must not change until `captured`: a request sent at once is
   * written to the socket from where they are; one that must wait behind the device's in-flight
   * limit is captured at once and carries what the frames hold when it is sent (see Pending). A
   * device reading shared frames is sent the frame numbers: captured at once, the frames are
   * pinned while the request is at the file system. `complete` resolves once the file system made
   * them durable.
   */
  write(vmid: number, page: number, pages: readonly Uint8Array[], frames: readonly number[] | undefined): StrategyWrite {
    const pending = new Pending('write', vmid, page, pages.length, undefined);
    const captured = new Promise<void>((resolve) => (pending.released = resolve));
    return { captured, complete: this.submit(pending, pages, frames) };
  }

  /** A strategy's answer from `owner`'s connection: settles its request; anything that is not an answer it owes is logged and dropped. */
  done(owner: DeviceOwner, answer: StrategyDone): void {
    const orphan = owner.reader === undefined ? undefined : this.orphans.get(owner.reader)?.requests.get(answer.id);
    if (orphan !== undefined) {
      this.log.info({ request: answer.id, vmid: orphan.vmid, page: orphan.page }, 'a failed device answered a write by frame reference late: its frames are let go');
      return this.letGoOrphan(owner.reader!, orphan);
    }
    for (const device of this.devices.values()) {
      if (device.owner !== owner) continue;
      const pending = device.inFlight.get(answer.id);
      if (pending === undefined) continue;
      device.inFlight.delete(answer.id);
      clearTimeout(pending.timer);
      this.unpin(pending);
      if (!pending.written) this.watchUnwritten(device, pending);
      if (answer.errno !== 0) {
        const code = errnoName(answer.errno);
        pending.reject(
          code === undefined
            ? new PagerError('file-system-error', `the strategy of device ${device.id} answered errno ${answer.errno}, which Linux does not name`)
            : new PagerError('file-system-error', `the strategy of device ${device.id} failed the ${pending.op} of page ${pending.page} of segment ${pending.vmid}: ${code}`, { code, errno: answer.errno }),
        );
      } else if (answer.data.length !== (pending.op === 'read' ? pending.npages * this.pageSize : 0)) {
        pending.reject(new PagerError('file-system-error', `the strategy of device ${device.id} answered a ${pending.op} of ${pending.npages} pages with ${answer.data.length} bytes`));
      } else {
        if (pending.into !== undefined) copyBytes(pending.into, 0, answer.data);
        pending.resolve();
      }
      this.pump(device);
      return;
    }
    this.log.warn({ request: answer.id }, 'a strategy answer to no request in flight on its devices (late, or garbage): dropped');
  }

  /** `owner`'s connection closed: its devices' requests, in flight and later, fail with EIO; their segments stay bound until rebound or deleted. */
  ownerGone(owner: DeviceOwner): void {
    for (const device of this.devices.values()) {
      if (device.owner === owner) this.fail(device, new PagerError('device-gone', `the connection serving paging device ${device.id} closed`));
    }
  }

  /** The owner whose strategy is reading page `pno` of `vmid` in (sent or queued), if any. */
  readingFor(vmid: number, pno: number): DeviceOwner | undefined {
    const device = this.byVmid.get(vmid);
    if (device === undefined) return undefined;
    for (const p of [...device.inFlight.values(), ...device.queue]) {
      if (p.op === 'read' && p.vmid === vmid && pno >= p.page && pno < p.page + p.npages) return device.owner;
    }
    return undefined;
  }

  /**
   * The owner whose strategy is writing page `pno` of `vmid` from its frame right now (a write by
   * frame reference, sent and unanswered), if any: on whichever device, the segment may have been
   * rebound since.
   */
  writingFor(vmid: number, pno: number): DeviceOwner | undefined {
    for (const device of this.devices.values()) {
      if (!device.byReference) continue;
      for (const p of device.inFlight.values()) {
        if (p.pinned && p.vmid === vmid && pno >= p.page && pno < p.page + p.npages) return device.owner;
      }
    }
    return undefined;
  }

  /**
   * True if `owner` has mounted a device, or its process owes late answers that let frames go
   * (its connection must be read until it closes: strategy answers come on it).
   */
  serves(owner: DeviceOwner): boolean {
    for (const device of this.devices.values()) if (device.owner === owner && device.alive) return true;
    return owner.reader !== undefined && this.orphans.has(owner.reader);
  }

  /** The table, for pagerctl devices and stats. */
  list(): { id: number; uid: number; alive: boolean; sharedFrames: boolean; segments: number[]; inFlight: number; queued: number; requests: number }[] {
    return [...this.devices.values()].map((d) => ({ id: d.id, uid: d.owner.uid, alive: d.alive, sharedFrames: d.byReference, segments: [...d.segments], inFlight: d.inFlight.size, queued: d.queue.length, requests: d.requests }));
  }

  /** True while segment `vmid` is bound to a device whose connection is open. */
  live(vmid: number): boolean {
    return this.byVmid.get(vmid)?.alive === true;
  }

  /** The device a segment is bound to, if any. */
  deviceOf(vmid: number): number | undefined {
    return this.byVmid.get(vmid)?.id;
  }

  private submit(pending: Pending, pages: readonly Uint8Array[], frames?: readonly number[]): Promise<void> {
    const device = this.byVmid.get(pending.vmid);
    if (device === undefined || !device.alive) {
      pending.released();
      return Promise.reject(
        device === undefined
          ? new PagerError('device-gone', `segment ${pending.vmid} is bound to no paging device (rebind it with vmSetdevid)`)
          : new PagerError('device-gone', `paging device ${device.id} is gone (its connection closed, or its strategy stopped answering): rebind the segment with vmSetdevid`),
      );
    }
    pending.id = this.nextRequest;
    this.nextRequest = this.nextRequest >= 0xffffffff ? 1 : this.nextRequest + 1;
    if (device.byReference && frames !== undefined && this.lentFrames + frames.length <= this.limits.maxLentFrames) {
      pending.frames = frames;
      pending.lent = true;
      this.lentFrames += frames.length;
      pending.parts = [encodeStrategyWriteByReference({ id: pending.id, device: device.id, vmid: pending.vmid, page: pending.page, npages: pending.npages }, frames)];
      pending.released(); // the device pins the frames itself while the file system reads them
    } else {
      pending.parts = strategyIoFrameParts({ id: pending.id, device: device.id, op: pending.op, vmid: pending.vmid, page: pending.page, npages: pending.npages }, pages);
      if (pages.length > 0 && (device.queue.length > 0 || device.inFlight.size >= this.limits.maxInFlight)) {
        pending.queued = true;
        pending.released();
      }
    }
    return new Promise<void>((resolve, reject) => {
      pending.resolve = resolve;
      pending.reject = reject;
      device.queue.push(pending);
      this.pump(device);
    });
  }

  /** Sends queued requests while the device is under its in-flight limit. */
  private pump(device: Device): void {
    while (device.alive && device.inFlight.size < this.limits.maxInFlight && device.queue.length > 0) {
      const pending = device.queue.shift()!;
      device.inFlight.set(pending.id, pending);
      device.requests++;
      pending.timer = setTimeout(() => this.timedOut(device, pending.id), this.limits.timeoutMs);
      if (pending.frames !== undefined) {
        for (const f of pending.frames) this.pins.pinFrame(f);
        pending.pinned = true;
      }
      const parts = pending.queued ? this.copied(pending) : pending.parts;
      pending.parts = NO_PAGES;
      device.unwritten++;
      device.owner.send(parts, () => {
        pending.written = true;
        device.unwritten--;
        pending.released();
        if (pending.copy !== undefined) this.copies.give(pending.copy);
      });
    }
    if (device.inFlight.size === 0 && device.queue.length === 0) this.wakeDrained(device);
  }

  /**
   * An answer came for a request the socket has not all taken (the peer answered after reading
   * its head only): its frames may be pinned, with no request timer left. Unless the rest is
   * taken within the timeout, the connection is dropped.
   */
  private watchUnwritten(device: Device, pending: Pending): void {
    setTimeout(() => {
      if (pending.written) return;
      this.log.warn({ device: device.id, request: pending.id }, 'a strategy answered a request it did not read whole, and stopped reading: its connection is dropped');
      device.owner.drop();
    }, this.limits.timeoutMs).unref();
  }

  /** A queued write's head, and its pages as they are now, copied into one buffer (kept in `pending.copy`). */
  private copied(pending: Pending): Uint8Array[] {
    const [head, ...pages] = pending.parts;
    const copy = this.copies.take(pending.npages * this.pageSize);
    let at = 0;
    for (const page of pages) {
      copyBytes(copy, at, page);
      at += page.length;
    }
    pending.copy = copy;
    return [head, copy];
  }

  /**
   * A request went unanswered: the device is failed as if its connection had closed. Failing only
   * the request would let a newer write of its pages go out while the old one may still land at
   * the file system after it.
   */
  private timedOut(device: Device, id: number): void {
    const pending = device.inFlight.get(id);
    if (pending === undefined) return;
    this.log.warn({ device: device.id, request: id, vmid: pending.vmid, page: pending.page }, 'a strategy request went unanswered: the device is failed (its I/O answers EIO until its segments are rebound)');
    this.fail(device, new PagerError('device-gone', `the strategy of paging device ${device.id} did not answer within ${this.limits.timeoutMs} ms`));
    // Requests it was sent may still wait in its socket's queue, their frames pinned: closing it lets them go.
    if (device.unwritten > 0) device.owner.drop();
  }

  /** Marks a device dead and fails its requests, in flight and queued, with `error`. */
  private fail(device: Device, error: PagerError): void {
    device.alive = false;
    // A queued write let its frames go when it was queued; one sent as bytes lets them go as the
    // socket takes it, or closes. One sent by frame reference may still be read by the file
    // system, which keeps its mapping whatever becomes of its connection: its frames are held
    // until it answers or its process exits (orphan; one freed meanwhile becomes another page's
    // only then: Vmm.freeFrame).
    for (const pending of [...device.inFlight.values(), ...device.queue.splice(0)]) {
      clearTimeout(pending.timer);
      // Sent, it may have reached the file system, whatever the socket's callbacks said yet.
      if (pending.pinned) this.orphan(device.owner, pending);
      else this.unpin(pending);
      pending.reject(error);
    }
    device.inFlight.clear();
    this.wakeDrained(device);
    this.forgetIfUnused(device);
  }

  /** A write by frame reference is over (answered, or never to be read): its frames may change again. */
  private unpin(pending: Pending): void {
    this.giveBack(pending);
    if (!pending.pinned) return;
    pending.pinned = false;
    for (const f of pending.frames!) this.pins.unpinFrame(f);
  }

  /** Its frames no longer count against maxLentFrames. */
  private giveBack(pending: Pending): void {
    if (!pending.lent) return;
    pending.lent = false;
    this.lentFrames -= pending.frames!.length;
  }

  /** Holds a failed device's unanswered write by frame reference until its process answers it or exits. */
  private orphan(owner: DeviceOwner, pending: Pending): void {
    const reader = owner.reader!;
    for (const f of pending.frames!) this.pins.orphanFrame(f);
    let mine = this.orphans.get(reader);
    if (mine === undefined) {
      this.orphans.set(reader, (mine = { uid: owner.uid, requests: new Map() }));
      reader.hold();
    }
    mine.requests.set(pending.id, pending);
    this.orphanSweep ??= setInterval(() => this.sweepOrphans(), ORPHAN_SWEEP_MS).unref();
  }

  private letGoOrphan(reader: FrameReader, pending: Pending): void {
    const mine = this.orphans.get(reader)!;
    mine.requests.delete(pending.id);
    pending.pinned = false;
    for (const f of pending.frames!) this.pins.unpinOrphan(f);
    this.giveBack(pending);
    if (mine.requests.size > 0) return;
    this.orphans.delete(reader);
    reader.letGo();
    if (this.orphans.size === 0) {
      clearInterval(this.orphanSweep);
      this.orphanSweep = undefined;
    }
  }

  /** Lets go the orphans of processes that have exited. */
  private sweepOrphans(): void {
    for (const [reader, mine] of this.orphans) {
      if (!reader.exited()) continue;
      this.log.info({ uid: mine.uid, requests: mine.requests.size }, 'a file system that did not answer writes by frame reference has exited: their frames are let go');
      for (const pending of [...mine.requests.values()]) this.letGoOrphan(reader, pending);
    }
  }

  /** Frames held for failed devices' unanswered writes by frame reference, by uid (for stats). */
  orphanedFramesByUid(): Record<number, number> {
    const byUid: Record<number, number> = {};
    for (const { uid, requests } of this.orphans.values()) {
      for (const pending of requests.values()) byUid[uid] = (byUid[uid] ?? 0) + pending.frames!.length;
    }
    return byUid;
  }

  private wakeDrained(device: Device): void {
    for (const wake of device.drained.splice(0)) wake();
  }

  /** A dead device with no segment left bound is removed: nobody can use or unmount it. */
  private forgetIfUnused(device: Device): void {
    if (!device.alive && device.segments.size === 0) this.devices.delete(device.id);
  }
}

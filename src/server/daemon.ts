import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { configError } from '../config/load-config.js';
import { parseSize, type Config } from '../config/tunables.js';
import { PagerError } from '../errors.js';
import { mallocTrim, peerCred, peerGroups } from '../native/addon.js';
import { PeerProcesses, type PeerProcess } from './peer-process.js';
import { SharedFramesTrust } from './shared-frames-trust.js';
import { MESSAGE_OVERHEAD_BYTES } from '../protocol/codec.js';
import type { IoObserver } from '../store/io-timing.js';
import { PersistentStore, type StoreOptions } from '../store/persistent-store.js';
import { scrubChunk } from '../store/scrub.js';
import type { ClientContext } from '../vm/context.js';
import { VmServices } from '../vm/services.js';
import { Vmm } from '../vm/vmm.js';
import { encodeReplyFrame } from '../protocol/codec.js';
import { Admissions } from './admission.js';
import { Connection, type ConnectionHost, type ConnectionLimits } from './connection.js';
import type { HandlerEnv } from './handlers.js';
import { answers, listen, socketActivated, socketFd } from './listener.js';
import { Metrics } from './metrics.js';
import { serveMetrics } from './metrics-http.js';
import { LiveBackup } from './live-backup.js';
import { connectionDevices } from '../strategy/connection-devices.js';
import { PagingDevices, type DeviceOwner, type FramePins } from '../strategy/paging-devices.js';
import { RoutingStore } from '../strategy/routing-store.js';
import { NbdServer } from '../nbd/nbd-server.js';
import { DeviceMissingError, SocketInUseError } from './start-refusals.js';

/** How long after a connection ends the daemon gives freed memory back (ms): one trim for a burst of closes. */
/** NBD's own limit on one request's data (the NBD project's and qemu's NBD_MAX_BUFFER_SIZE). */
const NBD_MAX_REQUEST_BYTES = 32 * 1024 * 1024;
const TRIM_DELAY_MS = 1000;
const TRIM_AGAIN_MS = 20_000;

/** Where the daemon keeps its files, from the configuration. */
/** The metadata snapshot a backup writes in the state directory (pagerctl moves it into the backup). */
export const BACKUP_SNAPSHOT = 'pagerd.sqlite.backup';

export function statePaths(config: Config): { device: string; database: string } {
  return {
    device: config.device !== '' ? config.device : join(config.stateDir, 'backing'),
    database: join(config.stateDir, 'pagerd.sqlite'),
  };
}

/** Opens the store the configuration names: a configured device must exist (the default one is created). */
export async function openConfiguredStore(config: Config, log: Logger, observeIo?: IoObserver, extra: Pick<StoreOptions, 'reportOnly'> = {}): Promise<PersistentStore> {
  if (config.device !== '' && !existsSync(config.device)) throw new DeviceMissingError(config.device);
  try {
    mkdirSync(config.stateDir, { recursive: true, mode: 0o750 });
  } catch (err) {
    throw Object.assign(new Error(`cannot create the state directory ${config.stateDir}: ${(err as Error).message}`), { code: (err as NodeJS.ErrnoException).code });
  }
  const paths = statePaths(config);
  return PersistentStore.open({
    devicePath: paths.device,
    databasePath: paths.database,
    pageSize: config['store.pageSize'],
    createBytes: parseSize(config['store.createBytes']),
    preallocate: config['store.preallocate'],
    spareSlots: config['store.spareSlots'],
    maxBatchPages: config['store.maxBatchPages'],
    format: config.format,
    log: log.child({ component: 'store' }),
    observeIo,
    ...extra,
  });
}

/**
 * The running daemon: the store, the engine, the services, and the socket clients talk to.
 * stop() is the graceful stop: no new connections or requests, requests in flight answered,
 * every modified page paged out durably, the store closed cleanly.
 */
export class Daemon {
  private readonly connections = new Set<Connection>();
  /** Peer processes given the shared frames, followed until they exit (frames lent to them by reference). */
  private readonly peers = new PeerProcesses();
  private readonly admissions: Admissions;
  private server: Server | undefined;
  private nbd: NbdServer | undefined;
  private metricsServer: HttpServer | undefined;
  private readonly backup: LiveBackup;
  private readonly maxHeldTotal: number;
  private heldTotal: number | undefined;
  private trimScheduled = false;

  /** Names this store (not its id, which salts its seals): a client can tell its segments from another store's of the same vmid. */
  private readonly storeName: string;

  private constructor(
    readonly config: Config,
    readonly store: PersistentStore,
    /** Client file systems' paging devices, and the store that routes their segments' pages to them. */
    private readonly paging: { devices: PagingDevices; routing: RoutingStore },
    readonly vmm: Vmm,
    readonly svc: VmServices,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    /** Who is offered shared frames; undefined when server.sharedFrames is off. */
    private readonly sharedFramesTrust: SharedFramesTrust | undefined,
  ) {
    this.maxHeldTotal = parseSize(config['server.maxQueuedBytesTotal']);
    this.storeName = createHash('sha256').update(store.header.storeId).digest('hex').slice(0, 16);
    this.backup = new LiveBackup(store, { device: statePaths(config).device, snapshot: join(config.stateDir, BACKUP_SNAPSHOT) }, async () => {
      // pagerd's own segments: client file systems' pages are not in the store a backup copies.
      const failed = await this.flushAll((vmid) => !this.paging.routing.pagedByStrategy(vmid));
      if (failed > 0) throw new PagerError('page-out-failed', `paging out every modified page before the backup failed on ${failed} segments`);
    }, log);
    this.admissions = new Admissions({
      maxConnections: config['server.maxConnections'],
      maxConnectionsPerUid: config['server.maxConnectionsPerUid'],
      maxHandshakesPerUid: config['server.maxHandshakesPerUid'],
    });
    metrics.watch(vmm, store, {
      connections: () => this.connections.size,
      nbdConnections: () => this.nbd?.connections ?? 0,
      refusedConnections: () => this.admissions.refused,
      pageOutsHeld: () => this.backup.holding,
    });
  }

  static async start(config: Config, log: Logger): Promise<Daemon> {
    const metrics = new Metrics();
    // Checked before the store is opened: a group that does not exist refuses the start (exit 78).
    const sharedFramesTrust = config['server.sharedFrames'] ? new SharedFramesTrust(config) : undefined;
    // Before the store is opened (and a default backing file created): a second pagerd on the same socket is refused first.
    for (const path of [config.socket, config.nbdSocket]) {
      if (path !== '' && !socketActivated() && (await answers(path))) throw new SocketInUseError(path);
    }
    // Bound before the store is opened: an address in use refuses the start with nothing created.
    const metricsServer = await serveMetrics(config.metricsListen, () => metrics.text(), metrics.registry.contentType, log).catch((err: NodeJS.ErrnoException) => {
      // In use: temporary (75), named; any other refusal (no such host or address here): the value is bad.
      if (err.code === 'EADDRINUSE') throw Object.assign(new Error(`metricsListen ${config.metricsListen}: ${err.message}`), { code: err.code });
      throw configError(config, 'metricsListen', `cannot listen on ${config.metricsListen}: ${err.message}`);
    });
    let store: PersistentStore;
    try {
      store = await openConfiguredStore(config, log, (op, seconds) => metrics.observeDeviceIo(op, seconds));
    } catch (err) {
      metricsServer?.close();
      throw err;
    }
    try {
      const pageSize = store.pageSize;
      const memory = parseSize(config['memory.size']);
      if (memory % pageSize !== 0 || memory < pageSize) throw configError(config, 'memory.size', `${memory} bytes is not a positive multiple of the store's page size ${pageSize}`);
      // The engine pins the frames a device reading shared frames is told of (made below: the engine pages through the devices).
      const pins: FramePins = { pinFrame: (f) => vmm.pinFrame(f), unpinFrame: (f) => vmm.unpinFrame(f), orphanFrame: (f) => vmm.orphanFrame(f), unpinOrphan: (f) => vmm.unpinOrphan(f) };
      const frames = memory / pageSize;
      const share = (fraction: number): number => Math.max(1, Math.floor(frames * fraction));
      const pagingDevices = new PagingDevices(
        pageSize,
        { maxInFlight: config['strategy.maxInFlight'], timeoutMs: config['strategy.timeoutMs'], maxLentFrames: share(config['strategy.maxStrandedShare']) },
        log.child({ component: 'strategy' }),
        pins,
      );
      const routing = new RoutingStore(store, pagingDevices, {
        maxRequestPages: config['strategy.maxRequestPages'],
        maxBatchPages: config['strategy.maxRequestPages'] * config['strategy.maxInFlight'],
        maxStrandedPages: share(config['strategy.maxStrandedShare']),
        maxHeldPerUid: share(config['strategy.maxModifiedShare']),
        maxHeldTotal: share(config['strategy.maxModifiedTotalShare']),
      });
      const vmm = await Vmm.open(routing, {
        frames,
        minFree: config['memory.minFree'],
        maxFree: Math.max(config['memory.maxFree'], config['memory.minFree']),
        writebackMinAgeMs: config['writeback.minAgeMs'],
        allocTimeoutMs: config['memory.allocTimeoutMs'],
        pageoutBatchPages: config['pageout.batchPages'],
        maxPinnedPerUid: share(config['memory.maxPinnedShare']),
        sharedFrames: config['server.sharedFrames'],
      });
      const daemon = new Daemon(config, store, { devices: pagingDevices, routing }, vmm, new VmServices(vmm), log, metrics, sharedFramesTrust);
      daemon.metricsServer = metricsServer;
      daemon.server = await listen(config.socket, parseInt(config.socketMode, 8), (s) => daemon.accept(s));
      if (config.nbdSocket !== '') {
        daemon.nbd = await daemon.startNbd().catch((err: unknown) => {
          daemon.server?.close();
          throw err;
        });
      }
      // A failed accept (EMFILE under a flood) is an 'error' of the server: logged, never fatal.
      daemon.server.on('error', (err) => log.warn({ err }, 'accepting a connection failed'));
      log.info({ socket: config.socket, device: statePaths(config).device, frames: vmm.pool.count, pageSize, recovery: store.recoveryCheck }, 'pagerd ready');
      return daemon;
    } catch (err) {
      metricsServer?.close();
      await store.close();
      throw err;
    }
  }

  private startNbd(): Promise<NbdServer> {
    const c = this.config;
    const limits = this.limits;
    return NbdServer.start({
      path: c.nbdSocket,
      mode: parseInt(c.socketMode, 8),
      vmm: this.vmm,
      svc: this.svc,
      mapped: (vmid, pno) => this.store.pageLocation(vmid, pno) !== undefined,
      admissions: this.admissions,
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
      // NBD's own limit on a request (32 MiB), within the reply bytes a connection may hold.
      limits: { maxRequestBytes: NBD_MAX_REQUEST_BYTES, maxInFlight: limits.maxInFlight, maxInFlightBytes: limits.maxQueuedBytes },
      log: this.log,
      observe: (op, seconds, ok, detail) => this.observe(this.log, op, seconds, ok, detail),
    });
  }

  private get limits(): ConnectionLimits {
    const c = this.config;
    return {
      maxPayloadBytes: parseSize(c['server.maxPayloadBytes']),
      maxInFlight: c['server.maxInFlight'],
      maxQueuedBytes: parseSize(c['server.maxQueuedBytes']),
      stalledDropMs: c['server.stalledDropMs'],
      idleTimeoutMs: c['server.idleTimeoutMs'],
      partialFrameTimeoutMs: c['server.partialFrameTimeoutMs'],
      handshakeTimeoutMs: c['server.handshakeTimeoutMs'],
    };
  }

  private accept(socket: Socket): void {
    let fd: number;
    let cred: { pid: number; uid: number; gid: number };
    try {
      fd = socketFd(socket);
      cred = peerCred(fd);
    } catch (err) {
      this.log.warn({ err }, 'could not read the peer credentials; closing the connection');
      socket.destroy();
      return;
    }
    const log = this.log.child({ peer: { pid: cred.pid, uid: cred.uid } });
    const admission = this.admissions.admit(cred.uid);
    if (typeof admission === 'string') {
      log.warn({ why: admission }, 'refusing a connection at a cap');
      refuse(socket, new PagerError('too-many-connections', admission));
      return;
    }
    const limits = this.limits;
    // Decided now, from what the kernel recorded at connect: the peer's pid may belong to another process later.
    let trusted: boolean;
    // A peer given the shared frames is followed until it exits: frames it was told to read are held for it until then at most.
    let reader: PeerProcess | undefined;
    try {
      trusted = this.sharedFramesTrust?.trusts(cred, () => peerGroups(fd)) === true;
      if (trusted) reader = this.peers.of(cred.pid, fd);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not read the peer groups or follow its process; not offering shared frames');
      trusted = false;
    }
    const ctx = this.svc.createContext(cred);
    // This connection as the owner of the paging devices it mounts: strategy requests go out on it.
    const owner: DeviceOwner = { uid: cred.uid, context: ctx, reader, send: (parts, written) => connection.sendFrame(parts, written), drop: () => socket.destroy() };
    const host: ConnectionHost = {
      strategyDone: (answer) => this.paging.devices.done(owner, answer),
      servesDevices: () => this.paging.devices.serves(owner),
      pageSize: this.vmm.pageSize,
      limits,
      env: (ctx, cancel): HandlerEnv => ({
        svc: this.svc,
        ctx,
        maxMoveBytes: limits.maxPayloadBytes - MESSAGE_OVERHEAD_BYTES,
        stats: () => this.stats(),
        metrics: () => this.metrics.text(),
        segments: (c) => this.segmentsVisibleTo(c),
        verify: (after, limit) => this.verify(ctx, after, limit),
        backupBegin: () => this.backup.begin(ctx),
        backupFinish: () => this.backup.finish(ctx),
        devices: connectionDevices({ ...this.paging, svc: this.svc, vmm: this.vmm }, ctx, owner),
        cancel,
      }),
      observe: (op, seconds, ok, detail) => this.observe(log, op, seconds, ok, detail),
      handshakeDone: admission.handshakeDone,
      overBudget: () => this.overBudget(),
      offersSharedFrames: () => trusted,
      sharedFramesFor: () => (trusted ? this.vmm.pool.offer() : undefined),
    };
    const connection = new Connection(socket, ctx, host, log);
    this.connections.add(connection);
    log.debug({}, 'client connected');
    void connection.closed().then(() => {
      this.backup.end(ctx);
      this.paging.devices.ownerGone(owner);
      reader?.letGo();
      admission.release();
      this.svc.endContext(ctx);
      this.connections.delete(connection);
      this.returnMemorySoon();
      log.debug({}, 'client disconnected');
    });
  }

  /** Counts a finished request; at --log-level trace, logs it (op, arguments, result, µs). */
  private observe(log: Logger, op: string, seconds: number, ok: boolean, detail: () => object): void {
    this.metrics.observeRequest(op, seconds, ok);
    if (log.isLevelEnabled('trace')) log.trace({ op, ...detail(), us: Math.round(seconds * 1e6) }, 'request');
  }

  /**
   * True while the connections together hold more reply bytes than server.maxQueuedBytesTotal.
   * Summed at most once per turn of the event loop (a sum over every connection per request would
   * cost more than the request).
   */
  private overBudget(): boolean {
    if (this.heldTotal === undefined) {
      let total = 0;
      for (const c of this.connections) total += c.heldBytes;
      this.heldTotal = total;
      setImmediate(() => (this.heldTotal = undefined));
    }
    return this.heldTotal > this.maxHeldTotal;
  }

  /**
   * After connections end, gives the memory their buffers held back to the system: freed buffers
   * stay with the C heap otherwise (200 dropped readers left the daemon at 400 MiB). A second
   * after, and again later, once the garbage collector has had time to free what they held.
   */
  private returnMemorySoon(): void {
    if (this.trimScheduled) return;
    this.trimScheduled = true;
    setTimeout(() => {
      this.trimScheduled = false;
      mallocTrim();
    }, TRIM_DELAY_MS).unref();
    setTimeout(() => mallocTrim(), TRIM_AGAIN_MS).unref();
  }

  stats(): object {
    const census = this.vmm.frameCensus();
    return {
      pageSize: this.vmm.pageSize,
      frames: this.vmm.pool.count,
      census,
      dirty: this.vmm.modifiedFrameCount(),
      // Pages of client segments modified or being written out, by owner (each held to strategy.maxModifiedShare).
      clientPagesHeld: this.paging.routing.heldByUid(),
      // Frames held for file systems that may still read them (failed devices' unanswered writes by frame reference), by uid.
      framesHeldForFailedDevices: this.paging.devices.orphanedFramesByUid(),
      counters: { ...this.vmm.counters },
      segments: this.vmm.segments.size,
      store: this.storeName,
      slots: this.store.slotStats,
      connections: this.connections.size,
      nbdConnections: this.nbd?.connections ?? 0,
      storeFailed: this.store.failed,
      // Page-out failures not yet heard, one per (context, segment): a context per connection and per NBD flush or FUA wait in progress.
      unheardFailures: [...this.vmm.clients].reduce((n, c) => n + c.unheardFailures.size, 0),
    };
  }

  private segmentsVisibleTo(ctx: ClientContext): object[] {
    return [...this.vmm.segments.values()]
      .filter((s) => ctx.maySee(s))
      .map((s) => ({ ...s.record, residentPages: s.pages.size, device: this.paging.devices.deviceOf(s.vmid) ?? null, deviceLive: this.paging.devices.live(s.vmid) }));
  }

  private async verify(ctx: ClientContext, after: { vmid: number; pno: number }, limit: number): Promise<object> {
    if (!ctx.mayUseWholeStore) throw new PagerError('no-read-access', 'verify scrubs the whole store: root or the daemon user only');
    if (!Number.isSafeInteger(after.vmid) || !Number.isSafeInteger(after.pno) || !Number.isSafeInteger(limit) || limit < 1 || limit > 65536) {
      throw new PagerError('bad-argument', 'verify takes a cursor of integers and a limit of 1..65536');
    }
    return scrubChunk(this.store, after, limit);
  }

  /** Graceful stop (SIGTERM): see the class comment. Answers how many segments kept modified pages that could not be paged out (lost). */
  async stop(): Promise<number> {
    this.log.info({}, 'stopping: finishing requests and paging out every modified page');
    // Stop accepting at once; close()'s callback would wait for every client to hang up.
    this.server?.close();
    this.nbd?.stop();
    this.metricsServer?.close();
    this.metricsServer?.closeAllConnections();
    this.backup.end(); // page-outs must go on: every modified page is paged out below
    for (const c of this.connections) c.stopReading();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise((r) => (timer = setTimeout(r, 30_000)));
    await Promise.race([Promise.all([...this.connections].map((c) => c.idle())), deadline]);
    clearTimeout(timer);
    // A client file system's segments count too: a modified page its strategy could not take (its
    // device gone or failing) is lost at the stop as surely as one pagerd's store could not.
    const unsaved = await this.flushAll();
    for (const c of this.connections) c.end();
    try {
      await this.store.close();
    } catch (err) {
      if (unsaved === 0) throw err;
      throw Object.assign(new Error(`${lostPages(unsaved)}, and closing the store failed: ${(err as Error).message}`), { code: 'EIO' }); // EX_IOERR
    }
    if (unsaved > 0) this.log.error({ segments: unsaved }, 'stopped, with modified pages that could not be paged out: they are lost');
    else this.log.info({}, 'stopped cleanly');
    return unsaved;
  }

  /**
   * Pages out every modified page of every segment and waits until all are durable. Its own
   * context hears only the failures of these page-outs: answers how many segments had one.
   * `only`: the segments to page out (all by default).
   */
  async flushAll(only: (vmid: number) => boolean = () => true): Promise<number> {
    const root = this.svc.createContext({ uid: 0, gid: 0, pid: process.pid });
    try {
      const segments = [...this.vmm.segments.values()].filter((seg) => !seg.largePages && seg.pageCount > 0 && only(seg.vmid));
      if (this.store.failed) {
        this.log.error({}, 'the store has failed: modified pages cannot be saved');
        return segments.filter((seg) => this.vmm.hasModifiedPages(seg)).length;
      }
      for (const seg of segments) await this.svc.vmWritep(root, seg.vmid, 0, seg.pageCount);
      let failed = 0;
      for (const seg of segments) {
        try {
          await this.svc.vmsIowait(root, seg.vmid);
        } catch (err) {
          failed++;
          this.log.error({ err, vmid: seg.vmid }, 'a page-out of every modified page failed; those pages were not saved');
        }
      }
      return failed;
    } finally {
      this.svc.endContext(root);
    }
  }
}

/** What a stop says of the segments whose modified pages it could not page out. */
export function lostPages(segments: number): string {
  return `the modified pages of ${segments} segment${segments === 1 ? '' : 's'} could not be paged out and are lost (the log says why)`;
}

/** Tells a connection refused at a cap why (as the reply to no request, id 0), then closes it. */
function refuse(socket: Socket, error: PagerError): void {
  socket.on('error', () => undefined);
  socket.end(encodeReplyFrame({ id: 0, error: { code: error.code, reason: error.reason, detail: error.detail }, results: [] }));
  setTimeout(() => socket.destroy(), 1000).unref();
}

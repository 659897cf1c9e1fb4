import { crc32c } from '../native/addon.js';
import { PagerError } from '../errors.js';
import { integrityCheck, openDatabase, type Database } from '../meta/database.js';
import { FreeSlotMap } from '../meta/free-slot-map.js';
import { MetaTable } from '../meta/meta-table.js';
import { BrokenSealError, PageSeal } from '../meta/page-seal.js';
import { PagesTable, type PageLocation, type PageMapping } from '../meta/pages-table.js';
import { SegmentsTable } from '../meta/segments-table.js';
import { UnsyncedPageouts, type UnsyncedPage } from '../meta/unsynced-pageouts.js';
import { WalSpace } from '../meta/wal-space.js';
import type { SegmentRecord } from '../vm/segment.js';
import type { BackingStore, PageWrite, WriteTicket } from '../vm/store.js';
import { openDevice, type BackingDevice, type DeviceOptions } from './device.js';
import { CallOrder } from './call-order.js';
import { cycleMismatch, cycleRecord, newestRecordedCycle } from './cycle-record.js';
import { Limbo } from './limbo.js';
import { PageMapCheck, type PageMapProblems } from './page-map-check.js';
import { encodeHeader, FORMAT_VERSION, HEADER_PROBE_BYTES, newHeader, probeHeader, type StoreHeader } from './header.js';
import { timed, type IoObserver } from './io-timing.js';
import { PageWriter, type WrittenCycle } from './page-writer.js';
import { SlotAllocator } from './slot-allocator.js';
import { rollBackUnsynced } from './unsynced-rollback.js';

/** What the store logs through (a pino logger fits). */
export interface StoreLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const SILENT: StoreLog = { info() {}, warn() {}, error() {} };

export interface StoreOptions extends DeviceOptions {
  devicePath: string;
  databasePath: string;
  /** Page size the store is formatted with (4096 or 65536); an existing store must match. */
  pageSize: number;
  /** Slots held back from reservations, as room for copy-on-write. */
  spareSlots: number;
  /** Most pages written in one cycle (one fdatasync, one transaction). */
  maxBatchPages: number;
  /** Format the device even if it holds something that is not a pagerd store (pagerd --format). */
  format: boolean;
  /**
   * Open a store whose page map contradicts itself instead of refusing it, to report what is
   * wrong (pagerd --check: `pageMapProblems`). Nothing may be written through such a store.
   */
  reportOnly?: boolean;
  log?: StoreLog;
  /** Told how long each device operation and metadata commit took (metrics). */
  observeIo?: IoObserver;
  /** Opens the device; tests substitute a simulated one. */
  openDevice?: (path: string, options: DeviceOptions) => Promise<BackingDevice>;
}

/** The store will not open this device with this metadata, and says why (exit status 78 for pagerd). */
export class StoreRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreRefusedError';
  }
}

/**
 * The device and the metadata contradict each other: serving would serve stale or wrong pages.
 * pagerd exits 65 (EX_DATAERR) on it, and systemd does not restart it.
 */
export class StoreCorruptError extends StoreRefusedError {
  constructor(message: string) {
    super(message);
    this.name = 'StoreCorruptError';
  }
}

/**
 * An SQLite error at open that means the database itself is damaged (not busy, not a permission):
 * as a StoreCorruptError with one line; one that says it cannot be written, as a StoreRefusedError;
 * undefined for any other error.
 */
function unreadableMetadata(err: unknown, path: string): StoreRefusedError | undefined {
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || typeof message !== 'string') return undefined;
  const damaged = /^SQLITE_(CORRUPT|NOTADB)/.test(code) || (code === 'SQLITE_ERROR' && /malformed|no such (column|table)/.test(message));
  if (damaged) return new StoreCorruptError(`${path} is damaged (${message}): ${REFUSAL_ADVICE}`);
  if (code.startsWith('SQLITE_READONLY')) {
    // Permissions, a read-only file system, or a header that says a newer SQLite must write it.
    return new StoreRefusedError(`${path} cannot be written (${message}): check its permissions and its file system; if both allow writing, its header is damaged (pagerd --check)`);
  }
  return undefined;
}

/** What a refusal for corruption tells the operator to do. */
const REFUSAL_ADVICE = 'refusing to start, so that no acknowledged page is overwritten or served wrong; `pagerd --check` lists every problem; restore the device and its database together from a backup';

/** How long after a page-out cycle's flush the store settles it if no cycle follows (settleSoon). */
const SETTLE_DELAY_MS = 10;

/** SQLite errors after which the metadata can no longer be trusted: the store fails permanently. */
const FATAL_SQLITE = /^SQLITE_(CORRUPT|NOTADB|READONLY|CANTOPEN|MISUSE)/;

/**
 * The backing store on a file or block device, with its metadata in SQLite (SPEC §2).
 *
 * Page-outs go to fresh slots (copy-on-write), one fdatasync and one transaction per cycle, run at
 * once; old slots are freed only after both (see UnsyncedPageouts). A release deletes the page's
 * row durably before it answers. Metadata is the truth: at start-up a slot no page references is
 * free, and a page whose unsynced new slot fails its checksum goes back to its old one.
 */
export class PersistentStore implements BackingStore {
  readonly pageSize: number;
  readonly header: StoreHeader;
  readonly maxBatchPages: number;
  readonly dataOffset: number;
  /** Result of the integrity check run at open after an unclean shutdown ('ok', or undefined if none ran). */
  readonly recoveryCheck: string | undefined;
  /** What the check of the page map found (opened with reportOnly: at once; see pageMapChecked). */
  pageMapProblems: PageMapProblems = { count: 0, first: [] };
  /**
   * Settles once every page-map row is checked (page-map-check.ts), in the background after open:
   * no page-out takes a slot before. Rejects with a StoreCorruptError when a row contradicts what
   * must hold; the store has then failed (pagerd exits 65).
   */
  pageMapChecked: Promise<void> = Promise.resolve();
  /** True once the page-map check has passed (not merely ended: a store closed first writes nothing more). */
  private pageMapPassed = false;
  private pageMapSettled = false;
  private failure: Error | undefined;
  private readonly meta: MetaTable;
  private readonly segments: SegmentsTable;
  private readonly pages: PagesTable;
  private readonly freeSlots: FreeSlotMap;
  private readonly unsynced: UnsyncedPageouts;
  private readonly walSpace: WalSpace;
  private readonly databasePath: string;
  /** Binds each page's checksum to its identity (page-seal.ts). */
  private readonly seal: PageSeal;
  /** The cycle committed last, while its data flush is in flight. */
  private unsyncedCycle: { id: number; pages: UnsyncedPage[]; written: number; number: number } | undefined;
  /**
   * The number of the last page-out cycle committed whose flush has not failed (meta.cycle, the
   * newest number the device may record, can be one more: a cycle whose flush failed; its number
   * is used again). The next cycle takes the number after it (cycle-record.ts).
   */
  private committedCycle: number;
  /** Cycles whose flush succeeded: their rows go in the next transaction. */
  private syncedCycles: number[] = [];
  private settleTimer: NodeJS.Timeout | undefined;
  /** The settle in progress (close waits for it). */
  private settling: Promise<void> = Promise.resolve();
  /** The newest cycle whose record is known durable on the device. */
  private recordedCycle: number;
  private readonly allocator: SlotAllocator;
  private readonly writer: PageWriter;
  private readonly log: StoreLog;
  private readonly zeros: Uint8Array;
  private readonly observeIo: StoreOptions['observeIo'];
  private readonly order = new CallOrder();
  private readonly limbo: Limbo;
  private closed = false;

  private constructor(
    readonly device: BackingDevice,
    private readonly db: Database,
    header: StoreHeader,
    options: StoreOptions,
    recoveryCheck: string | undefined,
  ) {
    this.header = header;
    this.pageSize = header.pageSize;
    this.dataOffset = header.pageSize;
    this.maxBatchPages = options.maxBatchPages;
    this.recoveryCheck = recoveryCheck;
    this.log = options.log ?? SILENT;
    this.observeIo = options.observeIo;
    this.zeros = new Uint8Array(header.pageSize);
    this.seal = new PageSeal(header.storeId);
    this.meta = new MetaTable(db);
    this.segments = new SegmentsTable(db, this.seal);
    this.pages = new PagesTable(db, this.seal);
    this.freeSlots = new FreeSlotMap(db, header.slotCount);
    this.unsynced = new UnsyncedPageouts(db);
    this.databasePath = options.databasePath;
    this.limbo = new Limbo(device, (slot) => this.dataOffset + slot * this.pageSize, this.pageSize, (slots) => this.allocator.freed(slots), (obj, msg) => this.log.warn(obj, msg));
    this.walSpace = new WalSpace(db, options.databasePath);
    this.committedCycle = Number(this.meta.get('cycle') ?? 0);
    this.recordedCycle = this.committedCycle; // open made the device record it
    const high = Number(this.meta.get('slot_high') ?? 0);
    this.allocator = new SlotAllocator(header.slotCount, options.spareSlots, high, this.freeSlots.bitmap);
    this.writer = new PageWriter({
      device,
      pageSize: this.pageSize,
      maxBatchPages: this.maxBatchPages,
      dataOffset: this.dataOffset,
      observeIo: options.observeIo,
      takeSlots: (n) => this.allocator.take(n),
      startCycle: () => this.startCycle(),
      writable: () => this.pageMapChecked.then(
        () => this.pageMapPassed,
        () => false,
      ),
      giveBackSlots: (slots) => this.allocator.giveBack(slots),
      commit: (pages) => this.commitPageOuts(pages),
      synced: () => this.pageOutsSynced(),
      notSynced: () => this.rollBackPageOuts(),
      failed: (stage, error) => this.log.error({ stage, err: error }, 'page-out cycle failed; its pages stay modified'),
      crashed: (error) => {
        this.failPermanently(error as Error);
        process.nextTick(() => {
          throw error; // a bug: the daemon ends (non-zero) rather than go on with a store in doubt
        });
      },
    });
  }

  /**
   * Opens (and on first use formats) the store. Refuses, with a message saying why, a device that
   * holds something else (unless options.format), a page size or store id that does not match the
   * metadata, and metadata that fails its integrity check after an unclean shutdown.
   */
  static async open(options: StoreOptions): Promise<PersistentStore> {
    const device = await (options.openDevice ?? openDevice)(options.devicePath, options);
    let db: Database | undefined;
    try {
      db = openDatabase(options.databasePath);
      const meta = new MetaTable(db);
      const probe = new Uint8Array(HEADER_PROBE_BYTES);
      await device.read(probe, 0);
      const found = probeHeader(probe);
      const knownId = meta.get('store_id');
      const where = options.devicePath;
      let header: StoreHeader;
      let fresh = false;
      if (found.kind === 'ours' && knownId === found.header.storeId) {
        header = found.header;
        if (header.pageSize !== options.pageSize) {
          throw new StoreRefusedError(`${where} is formatted with page size ${header.pageSize}, not the configured ${options.pageSize}`);
        }
        if (header.formatVersion < FORMAT_VERSION) header = await PersistentStore.upgradeHeader(device, header, options);
      } else if (found.kind === 'blank' && knownId === undefined) {
        header = await PersistentStore.format(device, db, options);
        fresh = true;
      } else if (options.format) {
        options.log?.warn({ device: where, found: found.kind }, 'formatting the store as asked (--format): its old contents are gone');
        header = await PersistentStore.format(device, db, options);
        fresh = true;
      } else if (found.kind === 'foreign') {
        throw new StoreRefusedError(`${where} holds data that is not a pagerd store (${found.why}); refusing to overwrite it without --format`);
      } else if (found.kind === 'blank') {
        throw new StoreRefusedError(`${where} is blank, but the metadata in ${options.databasePath} belongs to store ${knownId}; refusing without --format`);
      } else if (knownId === undefined) {
        throw new StoreRefusedError(`${where} is pagerd store ${found.header.storeId}, but its metadata database ${options.databasePath} is missing or empty; refusing without --format`);
      } else {
        throw new StoreRefusedError(`${where} is pagerd store ${found.header.storeId}, but ${options.databasePath} belongs to store ${knownId}`);
      }
      if (!fresh) {
        const deviceCycle = newestRecordedCycle(probe, header.storeId);
        const metadataCycle = Number(meta.get('cycle') ?? 0);
        const mismatch = cycleMismatch(deviceCycle, metadataCycle);
        if (mismatch !== undefined) {
          throw new StoreCorruptError(`${where} and ${options.databasePath} do not belong together: ${mismatch}. Refusing to serve stale pages: put back the database (with its -wal file) that goes with this device, or restore both from one backup`);
        }
        if (deviceCycle < metadataCycle) {
          // The last cycles' records had not reached the device (a crash): it records the
          // metadata's cycle now, before any page-out, so the next crash finds it no further behind.
          const { position, bytes } = cycleRecord(header.storeId, metadataCycle);
          await device.writev([bytes], position);
          await device.datasync();
        }
      }
      let recovery: string | undefined;
      if (!fresh && meta.get('clean_shutdown') !== '1') {
        recovery = integrityCheck(db);
        if (recovery !== 'ok') throw new StoreRefusedError(`metadata integrity check failed after an unclean shutdown: ${recovery}`);
        options.log?.info({ device: where }, 'recovered after an unclean shutdown; metadata integrity ok');
      }
      const high = meta.get('slot_high');
      if (!fresh && !/^\d+$/.test(high ?? '')) throw new StoreCorruptError(`${options.databasePath} holds no valid slot high water (meta.slot_high is ${JSON.stringify(high)}): ${REFUSAL_ADVICE}`);
      meta.set('clean_shutdown', 0);
      const store = new PersistentStore(device, db, header, options, recovery);
      const wentBack = await store.recoverUnsynced();
      if (wentBack > 0) options.log?.warn({ device: where, pages: wentBack }, 'pages whose last page-out was cut short went back to their previous version');
      store.segments.all();
      store.startPageMapCheck(options.reportOnly === true);
      return store;
    } catch (err) {
      db?.close();
      await device.close();
      if (err instanceof BrokenSealError) throw new StoreCorruptError(`${options.databasePath}: ${err.message}: ${REFUSAL_ADVICE}`);
      throw unreadableMetadata(err, options.databasePath) ?? err;
    }
  }

  /**
   * Brings an older format's header to FORMAT_VERSION. The metadata is already migrated (opening
   * the database did it, in one transaction), so a crash before this write only repeats it.
   */
  private static async upgradeHeader(device: BackingDevice, old: StoreHeader, options: StoreOptions): Promise<StoreHeader> {
    const header = { ...old, formatVersion: FORMAT_VERSION };
    await device.writev([encodeHeader(header)], 0);
    await device.datasync();
    options.log?.warn({ device: options.devicePath, from: old.formatVersion, to: FORMAT_VERSION }, 'upgraded the store to the current on-disk format');
    return header;
  }

  /** Writes a new header and empties the metadata, durably, header first. */
  private static async format(device: BackingDevice, db: Database, options: StoreOptions): Promise<StoreHeader> {
    if (options.pageSize !== 4096 && options.pageSize !== 65536) throw new StoreRefusedError(`page size must be 4096 or 65536, not ${options.pageSize}`);
    const slotCount = Math.floor((device.size - options.pageSize) / options.pageSize);
    if (slotCount < 1) throw new StoreRefusedError(`${options.devicePath} is too small for one page of ${options.pageSize} bytes after the header`);
    const header = newHeader(options.pageSize, slotCount);
    await device.writev([encodeHeader(header)], 0);
    await device.datasync();
    db.transaction(() => {
      db.exec('DELETE FROM page_map; DELETE FROM free_slot_map; DELETE FROM segments; DELETE FROM meta;');
      const meta = new MetaTable(db);
      meta.set('store_id', header.storeId);
      meta.set('page_size', header.pageSize);
      meta.set('slot_high', 0);
    }).immediate();
    return header;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Free bytes in the file system of the metadata database (at most a second old). */
  get metadataFreeBytes(): number {
    return this.walSpace.free;
  }

  /** True while page-outs are idle or completing cycles within the last `withinMs` (for the watchdog). */
  pageOutsProgressing(withinMs: number): boolean {
    return this.writer.progressing(withinMs);
  }

  async loadSegments(): Promise<SegmentRecord[]> {
    return this.segments.all(); // checked at open: a broken seal refused the store
  }

  async createSegment(record: Omit<SegmentRecord, 'vmid'>): Promise<number> {
    this.checkUsable();
    try {
      return this.walSpace.commit(() => this.segments.insert(record));
    } catch (err) {
      throw this.metadataError(err, 'metadata-full');
    }
  }

  deleteSegment(vmid: number): void {
    this.forgetPages(() => {
      const slots = this.pages.deleteSegment(vmid);
      this.segments.delete(vmid);
      return slots;
    });
    this.order.forgot(vmid, 0, Infinity);
  }

  async readPage(vmid: number, pno: number, into: Uint8Array): Promise<void> {
    const loc = this.locate(vmid, pno);
    if (this.fillNow(vmid, pno, into, loc)) return;
    const { slot } = loc!; // fillNow fills a page with no slot
    try {
      await timed('read', this.observeIo, () => this.device.read(into, this.dataOffset + slot * this.pageSize));
    } catch (err) {
      throw this.readFailed(vmid, pno, slot, err);
    }
    this.checkRead(vmid, pno, into, loc!);
  }

  readPageNow(vmid: number, pno: number, into: Uint8Array): boolean {
    return this.fillNow(vmid, pno, into, this.locate(vmid, pno));
  }

  writePages(pages: readonly PageWrite[]): WriteTicket {
    if (this.failure !== undefined) {
      // Refused whole: the batch consumed no reservations, so it has none to give back.
      return { captured: Promise.resolve(), complete: Promise.reject(new PagerError('store-failed', this.failure.message)) };
    }
    const { stamp, settled } = this.order.batchStarted();
    const ticket = this.writer.submit({ writes: pages, stamp });
    ticket.complete.then(settled, settled);
    return ticket;
  }

  releasePages(vmid: number, pfirst: number, npages: number): void {
    this.forgetPages(() => this.pages.deleteRange(vmid, pfirst, pfirst + npages));
    this.order.forgot(vmid, pfirst, pfirst + npages);
  }

  reserveSlots(count: number): boolean {
    return this.allocator.reserve(count);
  }

  unreserveSlots(count: number): void {
    this.allocator.unreserve(count);
  }

  /** Slot accounting, for stats. */
  get slotStats(): { capacity: number; mapped: number; inFlight: number; reserved: number; limbo: number; available: number } {
    const a = this.allocator;
    return { capacity: a.capacity, mapped: a.mapped, inFlight: a.inFlight, reserved: a.reserved, limbo: a.limbo, available: a.available };
  }

  /** Runs SQLite's integrity check on the metadata now; answers 'ok' or the problems. */
  checkMetadata(): string {
    return integrityCheck(this.db);
  }

  /** Mapped pages per the metadata. */
  mappedPages(): number {
    return this.pages.count();
  }

  /** Scrub support: mapped pages after (vmid, pno), and whether a slot is listed free. */
  pageBatchAfter(vmid: number, pno: number, limit: number): { vmid: number; pno: number; slot: number; checksum: number }[] {
    try {
      return this.pages.after(vmid, pno, limit);
    } catch (err) {
      throw this.sealError(err);
    }
  }

  /** The page map while it is being checked (see BackingStore.checking); undefined once that has ended. */
  get checking(): Promise<void> | undefined {
    return this.pageMapSettled ? undefined : this.pageMapChecked;
  }

  /** Checks the page map: at once to report (pagerd --check), else in the background. */
  private startPageMapCheck(reportOnly: boolean): void {
    if (reportOnly) {
      this.pageMapProblems = this.newPageMapCheck().run();
      this.pageMapPassed = this.pageMapProblems.count === 0;
      this.pageMapSettled = true;
      return;
    }
    this.pageMapChecked = this.checkPageMapInBackground();
    const settled = (): void => void (this.pageMapSettled = true);
    this.pageMapChecked.then(settled, settled); // also marks the rejection handled: whoever awaits it hears
  }

  /** A check of the page map against the segments, the high water and the free-slot map. */
  private newPageMapCheck(): PageMapCheck {
    const segments = this.segments.mappedCounts();
    const allocator = this.allocator;
    return new PageMapCheck({ pages: this.pages, segments, high: allocator.high, slotCount: this.header.slotCount, isFree: (slot) => allocator.isFree(slot) });
  }

  /** Runs the page-map check a step per turn of the event loop; fails the store if it finds a problem. */
  private checkPageMapInBackground(): Promise<void> {
    const check = this.newPageMapCheck();
    const started = performance.now();
    return new Promise<void>((resolve, reject) => {
      const fail = (err: StoreCorruptError): void => {
        this.failPermanently(err);
        reject(err);
      };
      const step = (): void => {
        if (this.closed) return resolve();
        let done: boolean;
        try {
          done = check.step();
        } catch (err) {
          return fail(unreadableMetadata(err, this.databasePath) ?? new StoreCorruptError(`${this.databasePath}: the page map cannot be read (${(err as Error).message}): ${REFUSAL_ADVICE}`));
        }
        if (!done) return void setImmediate(step);
        this.pageMapProblems = check.problems;
        const { count, first } = check.problems;
        const ms = Math.round(performance.now() - started);
        if (count === 0) {
          // The free-slot map is kept, not derived at open (its writes cost under 0.6 µs a page;
          // derived, no slot could be counted before the check ends). A slot it lists free that a
          // row maps fails the check; one it lost is found here and listed by the next commit.
          const unlisted = check.unlistedSlots();
          if (unlisted.length > 0) {
            this.allocator.unmapped(unlisted, true);
            this.log.warn({ slots: unlisted.length, first: unlisted[0] }, 'slots no page maps were missing from the free-slot map; they are free again');
          }
          this.pageMapPassed = true;
          this.log.info({ ms, rows: check.rows }, 'page map checked: page-outs may take slots');
          return resolve();
        }
        fail(new StoreCorruptError(`${this.databasePath}: the page map contradicts itself in ${count} place${count === 1 ? '' : 's'} (${first[0]}): ${REFUSAL_ADVICE}`));
      };
      setImmediate(step);
    });
  }

  /** Where the page map puts a page now (its slot and checksum), if anywhere. */
  pageLocation(vmid: number, pno: number): PageLocation | undefined {
    return this.locate(vmid, pno);
  }

  sharedSlots(): number[] {
    try {
      return this.pages.sharedSlots(this.header.slotCount);
    } catch (err) {
      throw this.sealError(err);
    }
  }

  slotIsFree(slot: number): boolean {
    return this.allocator.isFree(slot);
  }

  /**
   * Stops: waits for page-outs in flight, gives limbo slots back to the device, marks the shutdown
   * clean, checkpoints and truncates the WAL, and closes the files.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.settleTimer);
    await this.writer.idle();
    await this.settling;
    this.limbo.drain();
    if (this.failure === undefined) {
      await this.settle().catch((err: unknown) => this.log.warn({ err }, 'could not record the last page-out cycle on the device'));
      this.transact(() => this.meta.set('clean_shutdown', 1));
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    }
    this.db.close();
    await this.device.close();
  }

  /**
   * Closes the files at once, without a clean shutdown: the next open treats it as a crash
   * (integrity check). For a daemon that must stop now, and for crash tests.
   */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
    await this.device.close();
  }

  // ---- Internals --------------------------------------------------------------------------

  /**
   * The metadata step of a page-out cycle, run while its data flush is in flight: one transaction
   * mapping every page to its new slot and recording the cycle as unsynced. The slots the pages
   * leave stay allocated until the flush has succeeded (pageOutsSynced).
   */
  private commitPageOuts({ batches, slots, sums, number }: WrittenCycle): void {
    const overtaken: number[] = [];
    const unsynced: UnsyncedPage[] = [];
    try {
      this.transact(() => {
        overtaken.length = 0;
        unsynced.length = 0;
        const mappings: PageMapping[] = [];
        let i = 0;
        for (const { writes, stamp } of batches) {
          for (const { vmid, pno } of writes) {
            if (this.order.overtaken(vmid, pno, stamp)) overtaken.push(slots[i]);
            else mappings.push({ vmid, pno, slot: slots[i], checksum: this.seal.of(sums[i], vmid, pno) });
            i++;
          }
        }
        this.pages.putMany(mappings).forEach((previous, k) => {
          const { vmid, pno, slot } = mappings[k];
          if (previous === 'superseded') overtaken.push(slot); // the same page, written again in this cycle
          else unsynced.push({ vmid, pno, previous });
        });
        const id = this.unsynced.add(unsynced);
        this.unsyncedCycle = { id, pages: unsynced, written: slots.length, number };
        this.freeSlots.mark(slots, false);
        this.freeSlots.mark(overtaken, true);
        this.meta.set('slot_high', this.allocator.high);
        this.meta.set('cycle', number);
      });
    } catch (err) {
      this.unsyncedCycle = undefined;
      // A row that fails its seal is never rewritten: that would seal whatever slots it names.
      if (FATAL_SQLITE.test((err as { code?: string }).code ?? '') || err instanceof BrokenSealError) this.failPermanently(err as Error);
      throw err;
    }
    this.allocator.committed(slots.length, slots.length - overtaken.length);
    this.limbo.add(overtaken);
    this.committedCycle = number;
  }

  /**
   * Numbers the next page-out cycle, one past the last committed, and answers the record its data
   * carries to the device: the last committed cycle's, whose commit is durable by now. (The page
   * writer numbers a cycle only once the one before it has committed or failed, and a cycle after
   * a failed flush fails too, so no two cycles committed share a number unless the first one's
   * flush failed.)
   */
  private startCycle(): { number: number; position: number; bytes: Uint8Array } {
    return { number: this.committedCycle + 1, ...cycleRecord(this.header.storeId, this.committedCycle) };
  }

  /**
   * The committed cycle's flush succeeded: its pages are durable. The slots they left are free
   * (reused as they are: giving them back to the device would cost a syscall per scattered run,
   * a tenth of a page-out, and a fresh allocation when written again, where a full file system
   * answers ENOSPC); its unsynced row goes in the next transaction.
   */
  private pageOutsSynced(): void {
    const cycle = this.unsyncedCycle!;
    this.unsyncedCycle = undefined;
    this.syncedCycles.push(cycle.id);
    const left: number[] = [];
    for (const { previous } of cycle.pages) if (previous !== undefined) left.push(previous.slot);
    this.allocator.unmapped(left, true);
    this.settleSoon();
  }

  /**
   * Settles the synced cycles SETTLE_DELAY_MS after the last flush, unless more page-outs are on their way:
   * deletes their unsynced rows and puts the last committed cycle's record on the device. Until
   * then, a crash leaves the last cycle in doubt: the next open takes back any of its pages that
   * fail their seal (as if torn by the crash, though acknowledged), and the device does not yet
   * say the metadata must hold it (a lost -wal file that held only it would go unseen). The next
   * cycle settles both anyway; this bounds how long the last one stays in doubt when none follows.
   */
  private settleSoon(): void {
    if (this.settleTimer !== undefined) return void this.settleTimer.refresh(); // from the last flush: a pause, not a pulse
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      if (this.closed || this.failure !== undefined) return;
      if (this.writer.busy) return this.settleSoon();
      this.settling = this.settle().catch((err: unknown) => this.log.warn({ err }, 'could not settle the last page-out cycle; the next one will'));
    }, SETTLE_DELAY_MS);
    this.settleTimer.unref();
  }

  /** Deletes synced cycles' unsynced rows, and records the last committed cycle on the device, durably. */
  private async settle(): Promise<void> {
    if (this.syncedCycles.length > 0) this.transact(() => {});
    if (this.recordedCycle === this.committedCycle) return;
    const cycle = this.committedCycle;
    const { position, bytes } = cycleRecord(this.header.storeId, cycle);
    await this.device.writev([bytes], position);
    await this.device.datasync();
    this.recordedCycle = Math.max(this.recordedCycle, cycle);
  }

  /**
   * The committed cycle's flush failed: its pages go back to where they were, their new slots are
   * free again and their reservations restored (the pages stay modified). If even that cannot be
   * committed, the store fails: the next open resolves the cycle from its unsynced row.
   */
  private rollBackPageOuts(): void {
    const cycle = this.unsyncedCycle!;
    this.unsyncedCycle = undefined;
    try {
      this.rollBack(cycle.id, cycle.pages, () => false);
    } catch (err) {
      this.failPermanently(err as Error);
      return;
    }
    // meta.cycle stays: the cycle's record may have reached the device. The next cycle takes its number.
    this.committedCycle = cycle.number - 1;
    this.allocator.restoreReservations(cycle.written);
  }

  /**
   * At open: resolves the cycles a crash left unsynced. Each page still on its new slot is read and
   * checked; one whose bytes did not all reach the device goes back to its last complete version.
   * Answers how many pages went back.
   */
  private async recoverUnsynced(): Promise<number> {
    const cycles = this.unsynced.all();
    const bad = new Set<UnsyncedPage>();
    const into = new Uint8Array(this.pageSize);
    for (const { pages } of cycles) {
      for (const page of pages) {
        const now = this.pages.get(page.vmid, page.pno);
        if (now === undefined) continue;
        const at = this.dataOffset + now.slot * this.pageSize;
        // After a kill -9 (not a power loss) the page cache still holds them: no pool round trip each.
        if (!this.device.readNow(into, at)) await this.device.read(into, at);
        if (!this.sealMatches(into, page.vmid, page.pno, now.checksum)) bad.add(page);
      }
    }
    for (const { cycle, pages } of cycles) this.rollBack(cycle, pages, (page) => !bad.has(page));
    return bad.size;
  }

  /**
   * In one transaction: an unsynced cycle's pages that `keep` does not vouch for go back to where
   * they were, the slots no page points at any more are free, and the cycle's row is gone.
   */
  private rollBack(cycle: number, pages: readonly UnsyncedPage[], keep: (page: UnsyncedPage) => boolean): void {
    let unused: number[] = [];
    this.transact(() => {
      unused = rollBackUnsynced(this.pages, pages, keep);
      this.freeSlots.mark(unused, true);
      this.unsynced.delete(cycle);
    });
    this.allocator.unmapped(unused, false);
  }

  /**
   * Deletes page rows durably in one transaction (`forget` answers the slots they held), lists
   * those slots free, and sends them to limbo. The caller stamps the call (CallOrder.forgot).
   */
  private forgetPages(forget: () => number[]): void {
    this.checkUsable();
    let slots: number[] = [];
    try {
      this.transact(() => {
        slots = forget();
        this.freeSlots.mark(slots, true);
      });
    } catch (err) {
      throw this.metadataError(err, 'metadata-failed');
    }
    this.allocator.released(slots.length);
    this.limbo.add(slots);
  }

  /**
   * Runs `work` in one immediate transaction, with the free-slot map's staged changes (and the
   * slots the allocator freed unrecorded, and the rows of cycles since synced) written in it; they
   * become the known state only if the transaction commits.
   */
  private transact(work: () => void): void {
    const unrecorded = this.allocator.stillUnrecorded();
    const synced = this.syncedCycles;
    // The WAL's space manager may run this twice (once more after a checkpoint on SQLITE_FULL):
    // a failed attempt leaves nothing staged or cached behind.
    this.walSpace.commit(() => {
      try {
        this.db
          .transaction(() => {
            work();
            for (const [vmid, delta] of this.pages.takeCountChanges()) this.segments.addMapped(vmid, delta);
            this.freeSlots.mark(unrecorded, true);
            this.freeSlots.write();
            for (const id of synced) this.unsynced.delete(id);
          })
          .immediate();
      } catch (err) {
        this.freeSlots.abandoned();
        this.pages.forgetCached();
        throw err;
      }
    });
    this.freeSlots.committed();
    // Nothing frees slots or completes a flush while the (synchronous) transaction runs.
    this.allocator.unrecorded.clear();
    this.syncedCycles = [];
  }

  /** Fills `into` with a page at `loc` if that needs no wait: zeros for no slot, or a cached read. */
  private fillNow(vmid: number, pno: number, into: Uint8Array, loc: PageLocation | undefined): boolean {
    if (loc === undefined) {
      into.set(this.zeros); // not fill(0): frames are shared memory, where fill is slow
      return true;
    }
    let done: boolean;
    const start = performance.now();
    try {
      done = this.device.readNow(into, this.dataOffset + loc.slot * this.pageSize);
    } catch (err) {
      throw this.readFailed(vmid, pno, loc.slot, err);
    }
    if (!done) return false;
    this.observeIo?.('read', (performance.now() - start) / 1000);
    this.checkRead(vmid, pno, into, loc);
    return true;
  }

  /** Where the page map puts a page; EIO (checksum-mismatch), logged, if its row fails its seal. */
  private locate(vmid: number, pno: number): PageLocation | undefined {
    try {
      return this.pages.get(vmid, pno);
    } catch (err) {
      throw this.sealError(err, { vmid, pno });
    }
  }

  /** A BrokenSealError as EIO (checksum-mismatch), logged; any other error as it is. */
  private sealError(err: unknown, page?: { vmid: number; pno: number }): unknown {
    if (!(err instanceof BrokenSealError)) return err;
    this.log.error({ ...page, err }, 'page-map row failed its seal; answering EIO');
    return new PagerError('checksum-mismatch', err.message);
  }

  private readFailed(vmid: number, pno: number, slot: number, err: unknown): PagerError {
    this.log.error({ vmid, pno, slot, err }, 'page-in failed');
    return new PagerError('page-in-failed', `reading slot ${slot}: ${(err as Error).message}`);
  }

  /** True if `bytes` are page `pno` of `vmid` as sealed by `checksum` (its bytes, and its identity). */
  sealMatches(bytes: Uint8Array, vmid: number, pno: number, checksum: number): boolean {
    return this.seal.of(crc32c(bytes), vmid, pno) === checksum;
  }

  /** EIO (checksum-mismatch), logged, if the bytes read are not the page's last complete version. */
  private checkRead(vmid: number, pno: number, into: Uint8Array, loc: PageLocation): void {
    if (this.sealMatches(into, vmid, pno, loc.checksum)) return;
    this.log.error({ vmid, pno, slot: loc.slot }, 'slot failed its checksum; answering EIO');
    throw new PagerError('checksum-mismatch', `page ${pno} of segment ${vmid} (slot ${loc.slot}) failed its checksum`);
  }

  private checkUsable(): void {
    if (this.failure !== undefined) throw new PagerError('store-failed', this.failure.message);
  }

  private failPermanently(err: Error): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.log.error({ err }, 'the store has failed permanently; page-outs answer EIO until it is reopened');
  }

  private metadataError(err: unknown, reason: 'metadata-full' | 'metadata-failed'): PagerError {
    if (err instanceof BrokenSealError) return this.sealError(err) as PagerError;
    const code = (err as { code?: string }).code ?? '';
    if (FATAL_SQLITE.test(code)) this.failPermanently(err as Error);
    this.log.error({ err }, 'metadata update failed');
    return new PagerError(code === 'SQLITE_FULL' && reason === 'metadata-full' ? 'metadata-full' : 'metadata-failed', (err as Error).message);
  }
}

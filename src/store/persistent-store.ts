import { PagerError } from '../errors.js';
import { integrityCheck, type Database } from '../meta/database.js';
import type { Statement, Transaction } from 'better-sqlite3';
import { FreeSlotMap } from '../meta/free-slot-map.js';
import { MetadataWriter, WriterStoppedError } from '../meta/metadata-writer.js';
import { MetaTable } from '../meta/meta-table.js';
import { BrokenSealError, PageSeal } from '../meta/page-seal.js';
import { PagesTable, type PageLocation, type PageMapping } from '../meta/pages-table.js';
import { SegmentsTable } from '../meta/segments-table.js';
import { StatementLog } from '../meta/statement-log.js';
import { UnsyncedPageouts, type UnsyncedPage } from '../meta/unsynced-pageouts.js';
import { WalSpace } from '../meta/wal-space.js';
import { WalSync } from '../meta/wal-sync.js';
import type { SegmentRecord } from '../vm/segment.js';
import type { BackingStore, PageWrite, WriteTicket } from '../vm/store.js';
import type { BackingDevice } from './device.js';
import { CallOrder } from './call-order.js';
import { cycleRecord } from './cycle-record.js';
import { Limbo } from './limbo.js';
import { checkInBackground, PageMapCheck, type PageMapProblems } from './page-map-check.js';
import type { StoreHeader } from './header.js';
import { PageReader } from './page-reader.js';
import { PageWriter, type WrittenCycle } from './page-writer.js';
import { REFUSAL_ADVICE, refusalFor, StoreCorruptError, type StoreRefusedError } from './store-errors.js';
import { openStoreFiles } from './store-open.js';
import { SILENT, type StoreLog, type StoreOptions } from './store-options.js';
import { SlotAllocator } from './slot-allocator.js';
import { rollBackUnsynced } from './unsynced-rollback.js';

export { StoreCorruptError, StoreRefusedError } from './store-errors.js';
export type { StoreLog, StoreOptions } from './store-options.js';

/** How long after a page-out cycle's flush the store settles it if no cycle follows (settleSoon). */
const SETTLE_DELAY_MS = 10;

/**
 * Page-out cycles of at most this many pages commit on the event loop's connection (a transaction
 * of a few rows, ~0.1 ms); larger ones in the metadata writer's thread. A round trip to that thread
 * costs 0.2–0.3 ms of wake-ups on a VM: more than such a transaction, and on a flush's path.
 */
const EVENT_LOOP_COMMIT_PAGES = 8;

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
  private readonly walSync: WalSync;
  /** The tables' writes, run at once or recorded for the metadata writer's thread. */
  private readonly writes = new StatementLog();
  /** Commits page-out cycles off the event loop. */
  private readonly metadataWriter: MetadataWriter;
  private readonly databasePath: string;
  /** Binds each page's checksum to its identity (page-seal.ts). */
  private readonly seal: PageSeal;
  /** The cycle committed last, while its data flush is in flight (`overtaken`: its slots no page took, listed free). */
  private unsyncedCycle: { id: number; pages: UnsyncedPage[]; written: number; number: number; overtaken: number[] } | undefined;
  /**
   * The number of the last page-out cycle committed whose flush has not failed (meta.cycle, the
   * newest number the device may record, can be one more: a cycle whose flush failed; its number
   * is used again). The next cycle takes the number after it (cycle-record.ts).
   */
  private committedCycle: number;
  /** Settles once the page-out commit in flight has (successfully or not). */
  private commitSettled: Promise<void> = Promise.resolve();
  /** Cycles whose flush succeeded: their rows go in the next transaction. */
  private syncedCycles: number[] = [];
  private settleTimer: NodeJS.Timeout | undefined;
  /** The settle in progress (close waits for it). */
  private settling: Promise<void> = Promise.resolve();
  /** The newest cycle whose record is known durable on the device. */
  private recordedCycle: number;
  private readonly allocator: SlotAllocator;
  private readonly writer: PageWriter;
  private readonly reader: PageReader;
  private readonly log: StoreLog;
  private readonly order = new CallOrder();
  private readonly limbo: Limbo;
  private closed = false;
  /**
   * One immediate transaction around a callback, and the statements that switch the connection's
   * sync mode, made once: better-sqlite3's transaction() costs ~35 µs a call, a pragma() ~8 µs.
   */
  private readonly inTransaction: Transaction<(run: () => unknown) => unknown>;
  private readonly syncNormal: Statement;
  private readonly syncFull: Statement;
  /** The segments read at open, until loadSegments hands them over. */
  private loaded: SegmentRecord[] | undefined;

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
    this.seal = new PageSeal(header.storeId);
    this.inTransaction = db.transaction((run: () => unknown) => run());
    this.syncNormal = db.prepare('PRAGMA synchronous = NORMAL');
    this.syncFull = db.prepare('PRAGMA synchronous = FULL');
    this.meta = new MetaTable(db, this.writes);
    this.segments = new SegmentsTable(db, this.seal, this.writes);
    this.pages = new PagesTable(db, this.seal, this.writes);
    this.freeSlots = new FreeSlotMap(db, header.slotCount, this.writes);
    this.unsynced = new UnsyncedPageouts(db, this.writes);
    this.databasePath = options.databasePath;
    this.limbo = new Limbo(device, (slot) => this.dataOffset + slot * this.pageSize, this.pageSize, (slots) => this.allocator.freed(slots), (obj, msg) => this.log.warn(obj, msg));
    this.walSpace = new WalSpace(db, options.databasePath);
    this.walSync = new WalSync(options.databasePath, options.openWal);
    this.metadataWriter = new MetadataWriter(options.databasePath);
    this.committedCycle = Number(this.meta.get('cycle') ?? 0);
    this.recordedCycle = this.committedCycle; // open made the device record it
    const high = Number(this.meta.get('slot_high') ?? 0);
    this.allocator = new SlotAllocator(header.slotCount, options.spareSlots, high, this.freeSlots.bitmap);
    this.reader = new PageReader({ device, pages: this.pages, seal: this.seal, pageSize: this.pageSize, dataOffset: this.dataOffset, log: this.log, observeIo: options.observeIo });
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
   * Opens the store (store-open.ts says what it refuses), resolves the page-out cycles a crash
   * left unsynced, checks the segments' records, and starts the check of the page map.
   */
  static async open(options: StoreOptions): Promise<PersistentStore> {
    const files = await openStoreFiles(options);
    let store: PersistentStore | undefined;
    try {
      store = new PersistentStore(files.device, files.db, files.header, options, files.recovery);
      const wentBack = await store.recoverUnsynced();
      if (wentBack > 0) options.log?.warn({ device: options.devicePath, pages: wentBack }, 'pages whose last page-out was cut short went back to their previous version');
      store.loaded = store.segments.all(); // a record that fails its seal refuses the store
      store.startPageMapCheck(options.reportOnly === true);
      return store;
    } catch (err) {
      if (store !== undefined) await store.abort();
      else {
        files.db.close();
        await files.device.close();
      }
      throw refusalFor(err, options.databasePath) ?? err;
    }
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /**
   * Holds page-outs for a backup: resolves, with the release, once the cycles in flight have
   * settled. Until the release no slot is written and the page map maps no new slot, so a copy of
   * the device taken now, then a snapshot of the metadata, belong together.
   */
  holdPageOuts(): Promise<() => void> {
    this.checkUsable();
    return this.writer.pause();
  }

  /** Writes a consistent copy of the metadata database to `path` (SQLite's online backup). */
  async snapshotMetadata(path: string): Promise<void> {
    this.checkUsable();
    await this.db.backup(path);
  }

  /** Page-ins answered EIO: a slot or page-map row that failed its seal, or a read the device failed. */
  get readErrors(): { checksum: number; device: number } {
    return { checksum: this.reader.checksumFailures, device: this.reader.readFailures };
  }

  /** Free bytes in the file system of the metadata database (at most a second old). */
  get metadataFreeBytes(): number {
    return this.walSpace.free;
  }

  /** True while page-outs are idle or completing cycles within the last `withinMs` (for the watchdog). */
  pageOutsProgressing(withinMs: number): boolean {
    return this.writer.progressing(withinMs);
  }

  /** The segments as read (and their seals checked) at open; from SQLite again after the first call. */
  async loadSegments(): Promise<SegmentRecord[]> {
    const loaded = this.loaded ?? this.segments.all();
    this.loaded = undefined;
    return loaded;
  }

  async createSegment(record: Omit<SegmentRecord, 'vmid'>): Promise<number> {
    this.checkUsable();
    try {
      return this.transact(() => this.segments.insert(record));
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

  readPage(vmid: number, pno: number, into: Uint8Array): Promise<void> {
    return this.reader.read(vmid, pno, into);
  }

  readPageNow(vmid: number, pno: number, into: Uint8Array): boolean {
    return this.reader.readNow(vmid, pno, into);
  }

  /** True if `bytes` are page `pno` of `vmid` as sealed by `checksum` (its bytes, and its identity). */
  sealMatches(bytes: Uint8Array, vmid: number, pno: number, checksum: number): boolean {
    return this.reader.sealMatches(bytes, vmid, pno, checksum);
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
      throw this.reader.sealError(err);
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

  /** Runs the page-map check in the background; fails the store if it finds a problem. */
  private async checkPageMapInBackground(): Promise<void> {
    const check = this.newPageMapCheck();
    const started = performance.now();
    const failWith = (err: StoreRefusedError): StoreRefusedError => {
      this.failPermanently(err);
      return err;
    };
    let problems: PageMapProblems | undefined;
    try {
      problems = await checkInBackground(check, () => this.closed);
    } catch (err) {
      throw failWith(refusalFor(err, this.databasePath) ?? new StoreCorruptError(`${this.databasePath}: the page map cannot be read (${(err as Error).message}): ${REFUSAL_ADVICE}`));
    }
    if (problems === undefined) return; // closed first
    this.pageMapProblems = problems;
    const { count, first } = problems;
    if (count > 0) throw failWith(new StoreCorruptError(`${this.databasePath}: the page map contradicts itself in ${count} place${count === 1 ? '' : 's'} (${first[0]}): ${REFUSAL_ADVICE}`));
    // The free-slot map is kept, not derived at open (its writes cost under 0.6 µs a page;
    // derived, no slot could be counted before the check ends). A slot it lists free that a row
    // maps fails the check; one it lost is found here and listed by the next commit.
    const unlisted = check.unlistedSlots();
    if (unlisted.length > 0) {
      this.allocator.unmapped(unlisted, true);
      this.log.warn({ slots: unlisted.length, first: unlisted[0] }, 'slots no page maps were missing from the free-slot map; they are free again');
    }
    this.pageMapPassed = true;
    this.log.info({ ms: Math.round(performance.now() - started), rows: check.rows }, 'page map checked: page-outs may take slots');
  }

  /** Where the page map puts a page now (its slot and checksum), if anywhere. */
  pageLocation(vmid: number, pno: number): PageLocation | undefined {
    return this.reader.locate(vmid, pno);
  }

  sharedSlots(): number[] {
    try {
      return this.pages.sharedSlots(this.header.slotCount);
    } catch (err) {
      throw this.reader.sealError(err);
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
    await this.limbo.drain();
    this.metadataWriter.close(); // no page-out commits any more: what is left runs on this connection
    if (this.failure === undefined) {
      await this.settle().catch((err: unknown) => this.log.warn({ err }, 'could not record the last page-out cycle on the device'));
      this.transact(() => this.meta.set('clean_shutdown', 1));
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    }
    this.db.close();
    await this.walSync.close();
    await this.device.close();
  }

  /**
   * Closes the files at once, without a clean shutdown: the next open treats it as a crash
   * (integrity check). For a daemon that must stop now, and for crash tests.
   */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.metadataWriter.close();
    this.db.close();
    await this.walSync.close();
    await this.device.close();
  }

  // ---- Internals --------------------------------------------------------------------------

  /**
   * The metadata step of a page-out cycle, run while its data flush is in flight: one transaction
   * mapping every page to its new slot and recording the cycle as unsynced. Its writes are computed
   * here and committed in the metadata writer's thread (a cycle of at most EVENT_LOOP_COMMIT_PAGES
   * here, at once), made durable by a WAL sync in the thread pool. Resolves to whether that sync succeeded (if not, the cycle is undone as if its flush had
   * failed: rollBackPageOuts). The slots the pages leave stay allocated until the flush has
   * succeeded (pageOutsSynced).
   */
  private commitPageOuts({ batches, slots, sums, number }: WrittenCycle): Promise<boolean> {
    const overtaken: number[] = [];
    const unsynced: UnsyncedPage[] = [];
    this.metadataWriter.drain(); // its writes are computed from the state the last commit left
    const pending = this.pendingTransaction(() => {
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
      this.unsyncedCycle = { id, pages: unsynced, written: slots.length, number, overtaken };
      this.freeSlots.mark(slots, false);
      this.freeSlots.mark(overtaken, true);
      this.meta.set('slot_high', this.allocator.high);
      this.meta.set('cycle', number);
    });
    const failed = (err: Error): Error => {
      this.abandoned(pending);
      this.unsyncedCycle = undefined;
      // A row that fails its seal is never rewritten: that would seal whatever slots it names. With
      // the writer's thread gone, no page-out can commit again.
      if (FATAL_SQLITE.test((err as { code?: string }).code ?? '') || err instanceof BrokenSealError || err instanceof WriterStoppedError) this.failPermanently(err);
      return err;
    };
    const tookEffect = (): void => {
      this.freeSlots.committed();
      this.pages.rowsCommitted();
      this.walSync.committed();
      this.allocator.committed(slots.length, slots.length - overtaken.length);
      this.committedCycle = number;
    };
    let committed: Promise<void>;
    try {
      if (slots.length <= EVENT_LOOP_COMMIT_PAGES) {
        this.commitWithoutSync(pending.run);
        tookEffect();
        committed = Promise.resolve();
      } else {
        const writes = this.writes.record(pending.run);
        // The outcome is taken in before anything else writes the metadata (drain() runs it at
        // once); lookups meanwhile find the cycle's rows among the page map's uncommitted rows.
        committed = new Promise<void>((resolve, reject) =>
          this.metadataWriter.commit(writes, (err) => {
            if (err !== undefined) return reject(failed(err));
            tookEffect();
            resolve();
          }),
        );
      }
    } catch (err) {
      return Promise.reject(failed(err as Error));
    }
    this.commitSettled = committed.catch(() => undefined);
    return committed.then(() =>
      this.walSync.durable().then(
        () => true,
        (err: unknown) => {
          this.failPermanently(new PagerError('store-failed', `the metadata WAL could not be synced: ${(err as Error).message}`));
          return false;
        },
      ),
    );
  }

  /**
   * Numbers the next page-out cycle, one past the last committed, and answers the record its data
   * carries to the device: the last committed cycle's, once its commit's WAL sync is done. It waits
   * for the commit in flight (the writer's thread may still be running it), so no two cycles
   * committed share a number unless the first one's flush failed (a cycle after a failed flush
   * fails too).
   */
  private async startCycle(): Promise<{ number: number; position: number; bytes: Uint8Array }> {
    await this.commitSettled;
    const committed = this.committedCycle;
    await this.walSync.durable();
    return { number: committed + 1, ...cycleRecord(this.header.storeId, committed) };
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
    // Listed free by a commit now durable, and no write of the cycle's is still under way to them.
    this.limbo.add(cycle.overtaken);
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
    // FULL: off the page-out path, and a failed sync here leaves nothing for later cycles to doubt.
    if (this.syncedCycles.length > 0) this.transact(() => {});
    if (this.recordedCycle === this.committedCycle) return;
    const cycle = this.committedCycle;
    await this.walSync.durable(); // the device never records a cycle its metadata may lack
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
    // A store failed (its WAL's sync failed) writes nothing more: the next open resolves the cycle.
    if (this.failure !== undefined) return;
    try {
      this.rollBack(cycle.id, cycle.pages, () => false);
    } catch (err) {
      this.failPermanently(err as Error);
      return;
    }
    // meta.cycle stays: the cycle's record may have reached the device. The next cycle takes its number.
    this.committedCycle = cycle.number - 1;
    this.allocator.restoreReservations(cycle.written);
    this.limbo.add(cycle.overtaken); // listed free by its commit, which stands
  }

  /**
   * At open: resolves the cycles a crash left unsynced. Each page still on its new slot is read and
   * checked; one whose bytes did not all reach the device goes back to its last complete version.
   * Answers how many pages went back.
   */
  private async recoverUnsynced(): Promise<number> {
    const cycles = this.unsynced.all();
    for (const { cycle, pages } of cycles) {
      const outside = pages.find((p) => p.previous !== undefined && p.previous.slot >= this.allocator.capacity);
      if (outside !== undefined) throw new StoreCorruptError(`${this.databasePath}: unsynced page-out row ${cycle} names slot ${outside.previous!.slot}, past the device's ${this.allocator.capacity}: ${REFUSAL_ADVICE}`);
    }
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
   * Runs `work` in one immediate transaction on the event loop's connection, durably (FULL) before
   * it returns.
   */
  private transact<T>(work: () => T): T {
    this.metadataWriter.drain(); // the writer's thread and this connection never write at once
    const pending = this.pendingTransaction(work);
    let result: T;
    try {
      result = this.immediate(pending.run);
    } catch (err) {
      this.abandoned(pending);
      throw err;
    }
    this.freeSlots.committed();
    return result;
  }

  /**
   * Runs `run` in one immediate transaction on the event loop's connection with synchronous=NORMAL,
   * as the metadata writer's thread would: the WAL's sync follows in the pool (walSync).
   */
  private commitWithoutSync(run: () => void): void {
    this.syncNormal.run();
    try {
      this.immediate(run);
    } finally {
      this.syncFull.run();
    }
  }

  /** Runs `run` in one immediate transaction on the event loop's connection. */
  private immediate<T>(run: () => T): T {
    // The WAL's space manager may run this twice (once more after a checkpoint on SQLITE_FULL):
    // a failed attempt leaves nothing staged or cached behind.
    return this.walSpace.commit(() => {
      try {
        return this.inTransaction.immediate(run) as T;
      } catch (err) {
        this.forgetStaged();
        throw err;
      }
    });
  }

  /**
   * A transaction around `work` that also writes what the store holds for the next commit: each
   * segment's change of mapped pages, the free-slot map's staged chunks with the slots the
   * allocator freed unrecorded, and the deletion of the rows of cycles since synced. Those are
   * taken now (so a transaction running meanwhile does not write them again) and handed back if
   * it fails.
   */
  private pendingTransaction<T>(work: () => T): { run: () => T; unrecorded: number[]; synced: number[] } {
    const unrecorded = [...this.allocator.unrecorded];
    this.allocator.unrecorded.clear();
    const synced = this.syncedCycles;
    this.syncedCycles = [];
    const free = unrecorded.filter((slot) => this.allocator.isFree(slot)); // one taken again since is in use
    return {
      unrecorded,
      synced,
      run: () => {
        const result = work();
        for (const [vmid, delta] of this.pages.takeCountChanges()) this.segments.addMapped(vmid, delta);
        this.freeSlots.mark(free, true);
        this.freeSlots.write();
        for (const id of synced) this.unsynced.delete(id);
        return result;
      },
    };
  }

  /** A transaction failed: what it staged or cached is forgotten, what it took is handed back. */
  private abandoned(pending: { unrecorded: number[]; synced: number[] }): void {
    this.forgetStaged();
    for (const slot of pending.unrecorded) this.allocator.unrecorded.add(slot);
    this.syncedCycles = [...pending.synced, ...this.syncedCycles];
  }

  /** What a failed attempt at a transaction left in memory: the free-slot map's staged chunks, page-map rows ahead of SQLite. */
  private forgetStaged(): void {
    this.freeSlots.abandoned();
    this.pages.forgetCached();
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
    if (err instanceof BrokenSealError) return this.reader.sealError(err) as PagerError;
    const code = (err as { code?: string }).code ?? '';
    if (FATAL_SQLITE.test(code)) this.failPermanently(err as Error);
    this.log.error({ err }, 'metadata update failed');
    return new PagerError(code === 'SQLITE_FULL' && reason === 'metadata-full' ? 'metadata-full' : 'metadata-failed', (err as Error).message);
  }
}

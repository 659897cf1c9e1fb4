import { PagerError } from '../errors.js';
import { BrokenSealError, type PageSeal } from '../meta/page-seal.js';
import type { PageLocation, PagesTable } from '../meta/pages-table.js';
import { crc32c } from '../native/addon.js';
import type { BackingDevice } from './device.js';
import { timed, type IoObserver } from './io-timing.js';
import type { StoreLog } from './store-options.js';
import { copyBytes } from '../copy-bytes.js';

/** What page reads use of the store. */
export interface PageReaderParts {
  device: BackingDevice;
  pages: PagesTable;
  seal: PageSeal;
  pageSize: number;
  /** Byte position of slot 0 on the device. */
  dataOffset: number;
  log: StoreLog;
  observeIo?: IoObserver;
}

/**
 * Page reads from the store: where the page map puts a page, its slot's bytes, and their seal
 * checked (page-seal.ts), so a read answers the page's last complete version or EIO, logged —
 * never another page's bytes or an older version's.
 */
export class PageReader {
  private readonly zeros: Uint8Array;
  /** Page-ins (and page-map lookups) answered EIO because a slot or a row failed its seal. */
  checksumFailures = 0;
  /** Page-ins answered EIO because the device failed the read. */
  readFailures = 0;

  constructor(private readonly parts: PageReaderParts) {
    this.zeros = new Uint8Array(parts.pageSize);
  }

  /** Reads a page into `into`: zeros if it has no slot; EIO if its slot fails its seal or cannot be read. */
  async read(vmid: number, pno: number, into: Uint8Array): Promise<void> {
    const loc = this.locate(vmid, pno);
    if (this.fillNow(vmid, pno, into, loc)) return;
    const { slot } = loc!; // fillNow fills a page with no slot
    try {
      await timed('read', this.parts.observeIo, () => this.parts.device.read(into, this.parts.dataOffset + slot * this.parts.pageSize));
    } catch (err) {
      throw this.readFailed(vmid, pno, slot, err);
    }
    this.checkRead(vmid, pno, into, loc!);
  }

  /** Reads a page if that needs no wait (no slot, or its slot cached); false if it would. */
  readNow(vmid: number, pno: number, into: Uint8Array): boolean {
    return this.fillNow(vmid, pno, into, this.locate(vmid, pno));
  }

  /** Fills `into` with a page at `loc` if that needs no wait: zeros for no slot, or a cached read. */
  private fillNow(vmid: number, pno: number, into: Uint8Array, loc: PageLocation | undefined): boolean {
    if (loc === undefined) {
      copyBytes(into, 0, this.zeros); // not fill(0) or set(): frames are shared memory, where they are slow
      return true;
    }
    let done: boolean;
    const start = performance.now();
    try {
      done = this.parts.device.readNow(into, this.parts.dataOffset + loc.slot * this.parts.pageSize);
    } catch (err) {
      throw this.readFailed(vmid, pno, loc.slot, err);
    }
    if (!done) return false;
    this.parts.observeIo?.('read', (performance.now() - start) / 1000);
    this.checkRead(vmid, pno, into, loc);
    return true;
  }

  /** Where the page map puts a page; EIO (checksum-mismatch), logged, if its row fails its seal. */
  locate(vmid: number, pno: number): PageLocation | undefined {
    try {
      return this.parts.pages.get(vmid, pno);
    } catch (err) {
      throw this.sealError(err, { vmid, pno });
    }
  }

  /** A BrokenSealError as EIO (checksum-mismatch), logged; any other error as it is. */
  sealError(err: unknown, page?: { vmid: number; pno: number }): unknown {
    if (!(err instanceof BrokenSealError)) return err;
    this.checksumFailures++;
    this.parts.log.error({ ...page, err }, 'page-map row failed its seal; answering EIO');
    return new PagerError('checksum-mismatch', err.message);
  }

  private readFailed(vmid: number, pno: number, slot: number, err: unknown): PagerError {
    this.readFailures++;
    this.parts.log.error({ vmid, pno, slot, err }, 'page-in failed');
    return new PagerError('page-in-failed', `reading slot ${slot}: ${(err as Error).message}`);
  }

  /** True if `bytes` are page `pno` of `vmid` as sealed by `checksum` (its bytes, and its identity). */
  sealMatches(bytes: Uint8Array, vmid: number, pno: number, checksum: number): boolean {
    return this.parts.seal.of(crc32c(bytes), vmid, pno) === checksum;
  }

  /** EIO (checksum-mismatch), logged, if the bytes read are not the page's last complete version. */
  private checkRead(vmid: number, pno: number, into: Uint8Array, loc: PageLocation): void {
    if (this.sealMatches(into, vmid, pno, loc.checksum)) return;
    this.checksumFailures++;
    this.parts.log.error({ vmid, pno, slot: loc.slot }, 'slot failed its checksum; answering EIO');
    throw new PagerError('checksum-mismatch', `page ${pno} of segment ${vmid} (slot ${loc.slot}) failed its checksum`);
  }
}

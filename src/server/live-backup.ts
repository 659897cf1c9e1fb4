import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { PagerError } from '../errors.js';
import type { PersistentStore } from '../store/persistent-store.js';
import type { ClientContext } from '../vm/context.js';

/**
 * A consistent copy of a live store, made by its caller (pagerctl backup) while the daemon holds
 * still what the copy needs: begin pages out every modified page (so the copy holds every write
 * answered before it began), then holds page-outs (no slot is written, the page map maps no new
 * slot) and answers the device's path; the caller copies the device; finish writes a snapshot
 * of the metadata and lets page-outs go on. The metadata taken after the device copy maps only
 * slots that were mapped, unchanged, all through it (releases meanwhile only unmap). One backup
 * at a time; a caller that goes away lets page-outs go on.
 */
export class LiveBackup {
  private holder: { ctx: ClientContext; release: () => void } | undefined;

  constructor(
    private readonly store: PersistentStore,
    private readonly paths: { device: string; snapshot: string },
    /** Pages out every modified page and waits until all are durable. */
    private readonly flushAll: () => Promise<void>,
    private readonly log: Logger,
  ) {}

  /** True while a backup holds page-outs (or is settling the cycles in flight to hold them). */
  get holding(): boolean {
    return this.holder !== undefined;
  }

  async begin(ctx: ClientContext): Promise<string> {
    if (!ctx.mayUseWholeStore) throw new PagerError('no-read-access', 'a backup copies the whole store: root or the daemon user only');
    if (this.holder !== undefined) throw new PagerError('backup-in-progress');
    const claim = { ctx, release: (): void => {} };
    this.holder = claim;
    let release: () => void;
    try {
      await this.flushAll();
      release = await this.store.holdPageOuts();
    } catch (err) {
      if (this.holder === claim) this.holder = undefined;
      throw err;
    }
    if (this.holder !== claim) {
      release(); // the caller left while the cycles in flight settled
      throw new PagerError('no-backup', 'the connection that began the backup closed');
    }
    claim.release = release;
    this.log.info({ device: this.paths.device }, 'backup: page-outs held while the device is copied');
    return resolve(this.paths.device);
  }

  async finish(ctx: ClientContext): Promise<string> {
    if (this.holder?.ctx !== ctx) throw new PagerError('no-backup');
    try {
      await this.store.snapshotMetadata(this.paths.snapshot);
    } finally {
      this.end(ctx);
    }
    return resolve(this.paths.snapshot);
  }

  /** Lets page-outs go on if `ctx` (or, without one, anyone) holds them: its connection closed, or the daemon stops. */
  end(ctx?: ClientContext): void {
    const holder = this.holder;
    if (holder === undefined || (ctx !== undefined && holder.ctx !== ctx)) return;
    this.holder = undefined;
    holder.release();
    this.log.info({}, 'backup: page-outs go on');
  }
}

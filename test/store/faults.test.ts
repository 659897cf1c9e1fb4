import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING } from '../../src/constants.js';
import { openDevice } from '../../src/store/device.js';
import { SMALL_CYCLE_PAGES } from '../../src/store/page-writer.js';
import { PersistentStore, type StoreOptions } from '../../src/store/persistent-store.js';
import { scrub } from '../../src/store/scrub.js';
import { VmServices } from '../../src/vm/services.js';
import { Vmm } from '../../src/vm/vmm.js';
import { FaultyDevice } from '../support/faulty-device.js';
import { storeDir, storeOptions } from '../support/store-files.js';

const PAGE = 4096;
const page = (byte: number) => new Uint8Array(PAGE).fill(byte);
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

/** The engine over the real persistent store, on a device whose faults the test controls. */
async function engineOnFaultyDevice(options: StoreOptions) {
  let faulty!: FaultyDevice;
  const store = await PersistentStore.open({
    ...options,
    openDevice: async (path, o) => (faulty = new FaultyDevice(await openDevice(path, o))),
  });
  const vmm = await Vmm.open(store, { frames: 32, minFree: 2, maxFree: 4, writebackMinAgeMs: 0, allocTimeoutMs: 1000, pageoutBatchPages: 16 });
  const svc = new VmServices(vmm);
  const ctx = svc.createContext({ uid: 1000, gid: 1000, pid: 1 });
  const vmid = await svc.vmsCreate(ctx, V_WORKING, 64 * PAGE);
  return { store, vmm, svc, ctx, vmid, faulty: () => faulty };
}

async function read(e: Awaited<ReturnType<typeof engineOnFaultyDevice>>, pno: number): Promise<Uint8Array> {
  const buf = new Uint8Array(PAGE);
  await e.svc.vmMove(e.ctx, e.vmid, pno * PAGE, PAGE, UIO_READ, uio(buf));
  return buf;
}

describe('device faults reach the client and lose nothing', () => {
  for (const [what, inject] of [
    ['a failed write (EIO)', (d: FaultyDevice) => (d.failWritev = 'EIO')],
    ['a failed write (ENOSPC)', (d: FaultyDevice) => (d.failWritev = 'ENOSPC')],
    ['a failed fdatasync (EIO)', (d: FaultyDevice) => (d.failDatasync = 'EIO')],
  ] as const) {
    it(`${what}: vms_iowait answers EIO, the page stays modified with its latest bytes, metadata is unchanged`, async () => {
      const e = await engineOnFaultyDevice(storeOptions(storeDir()));
      await e.svc.vmMove(e.ctx, e.vmid, 0, PAGE, UIO_WRITE, uio(page(1)));
      await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
      await e.svc.vmsIowait(e.ctx, e.vmid); // version 1 is durable
      const before = e.store.pageBatchAfter(0, 0, 10);

      await e.svc.vmMove(e.ctx, e.vmid, 0, PAGE, UIO_WRITE, uio(page(2)));
      inject(e.faulty());
      await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
      await expect(e.svc.vmsIowait(e.ctx, e.vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'page-out-failed' });
      expect(e.store.pageBatchAfter(0, 0, 10)).toEqual(before);
      expect(e.svc.vmQmodify(e.ctx, e.vmid)).toBe(true);
      expect(await read(e, 0)).toEqual(page(2));

      // Healed: the next page-out writes the page to a fresh slot and succeeds.
      e.faulty().failWritev = undefined;
      e.faulty().failDatasync = undefined;
      await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
      await e.svc.vmsIowait(e.ctx, e.vmid);
      expect(e.store.pageBatchAfter(0, 0, 10)[0].slot).not.toBe(before[0].slot);
      await e.store.close();
    });
  }

  it('a failed sync of the metadata WAL: vms_iowait answers EIO, the page stays modified, the store fails permanently (never trusting a later sync), and the next open serves a complete version', async () => {
    let failWal = false;
    const options = storeOptions(storeDir());
    const e = await engineOnFaultyDevice({
      ...options,
      openWal: async (path) => {
        const wal = await open(path, 'r');
        return { datasync: () => (failWal ? Promise.reject(Object.assign(new Error('EIO: injected'), { code: 'EIO' })) : wal.datasync()), close: () => wal.close() };
      },
    });
    await e.svc.vmMove(e.ctx, e.vmid, 0, PAGE, UIO_WRITE, uio(page(1)));
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
    await e.svc.vmsIowait(e.ctx, e.vmid); // version 1 is durable

    await e.svc.vmMove(e.ctx, e.vmid, 0, PAGE, UIO_WRITE, uio(page(2)));
    failWal = true;
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 1);
    await expect(e.svc.vmsIowait(e.ctx, e.vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'page-out-failed' });
    expect(e.store.failed).toBe(true);
    expect(e.svc.vmQmodify(e.ctx, e.vmid)).toBe(true);
    expect(await read(e, 0)).toEqual(page(2));
    // Healed, it still refuses: a sync after a failed one may succeed with frames missing.
    failWal = false;
    await expect(e.svc.vmWritep(e.ctx, e.vmid, 0, 1)).rejects.toMatchObject({ code: 'EIO', reason: 'store-failed' });

    await e.store.abort();
    const again = await PersistentStore.open(options);
    const back = new Uint8Array(PAGE);
    await again.readPage(e.vmid, 0, back);
    expect([page(1), page(2)]).toContainEqual(back); // version 1 was acknowledged; version 2 is a later one, complete
    await again.close();
  });

  it('page-outs failing over and over keep no growing bookkeeping (the same slots are given back each time)', async () => {
    const e = await engineOnFaultyDevice(storeOptions(storeDir()));
    await e.svc.vmMove(e.ctx, e.vmid, 0, 4 * PAGE, UIO_WRITE, uio(new Uint8Array(4 * PAGE).fill(3)));
    e.faulty().failWritev = 'EIO';
    for (let i = 0; i < 200; i++) {
      await e.svc.vmWritep(e.ctx, e.vmid, 0, 4);
      await expect(e.svc.vmsIowait(e.ctx, e.vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'page-out-failed' });
    }
    const allocator = (e.store as unknown as { allocator: { unrecorded: Set<number> } }).allocator;
    expect(allocator.unrecorded.size).toBeLessThanOrEqual(4);
    expect(e.ctx.unheardFailures.size).toBe(0);
    e.faulty().failWritev = undefined;
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 4);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    await e.store.close();
  });

  it('a failed page-in answers EIO to the mover and leaves nothing resident', async () => {
    const e = await engineOnFaultyDevice(storeOptions(storeDir()));
    await e.svc.vmMove(e.ctx, e.vmid, 0, PAGE, UIO_WRITE, uio(page(4)));
    await e.svc.vmFlushp(e.ctx, e.vmid, 0, 1);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    e.faulty().failRead = 'EIO';
    await expect(read(e, 0)).rejects.toMatchObject({ code: 'EIO', reason: 'page-in-failed' });
    expect(e.svc.vmQpages(e.ctx, e.vmid)).toBe(0);
    e.faulty().failRead = undefined;
    expect(await read(e, 0)).toEqual(page(4));
    await e.store.close();
  });
});

const isRoot = process.getuid?.() === 0;

describe('a real full filesystem', () => {
  it.runIf(isRoot)('ENOSPC from a full tmpfs under a sparse backing file: EIO to the client, nothing acknowledged that is not durable', async () => {
    const mount = mkdtempSync(join(tmpdir(), 'pagerd-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mount]);
    try {
      const dbDir = storeDir();
      const options = storeOptions(dbDir, { devicePath: join(mount, 'backing'), createBytes: 1024 * PAGE });
      const e = await engineOnFaultyDevice(options);
      const written: number[] = [];
      let failure: unknown;
      for (let p = 0; p < 40 && failure === undefined; p++) {
        await e.svc.vmMove(e.ctx, e.vmid, p * PAGE, PAGE, UIO_WRITE, uio(page(p + 1)));
        await e.svc.vmWritep(e.ctx, e.vmid, p, 1);
        try {
          await e.svc.vmsIowait(e.ctx, e.vmid);
          written.push(p);
        } catch (err) {
          failure = err;
          expect(e.svc.vmQmodify(e.ctx, e.vmid)).toBe(true);
          expect(await read(e, p)).toEqual(page(p + 1));
        }
      }
      expect(failure).toMatchObject({ code: 'EIO', reason: 'page-out-failed' });
      expect(String((failure as Error).message)).toMatch(/ENOSPC/);
      await e.store.abort();
      // Everything acknowledged before the failure reads back after a restart.
      const store = await PersistentStore.open(options);
      for (const p of written) {
        const buf = new Uint8Array(PAGE);
        await store.readPage(e.vmid, p, buf);
        expect(buf).toEqual(page(p + 1));
      }
      expect(store.mappedPages()).toBe(written.length);
      await store.close();
    } finally {
      execFileSync('umount', ['-l', mount]);
      rmSync(mount, { recursive: true, force: true });
    }
  });
});

describe('slots of a failed page-out', () => {
  it('are reused by the next page-out and never listed free while mapped (checked by a scrub after reopen)', async () => {
    const dir = storeDir();
    const options = storeOptions(dir);
    const e = await engineOnFaultyDevice(options);
    await e.svc.vmMove(e.ctx, e.vmid, 0, 4 * PAGE, UIO_WRITE, uio(new Uint8Array(4 * PAGE).fill(3)));
    e.faulty().failWritev = 'EIO';
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 4);
    await expect(e.svc.vmsIowait(e.ctx, e.vmid)).rejects.toMatchObject({ code: 'EIO' });
    e.faulty().failWritev = undefined;
    await e.svc.vmWritep(e.ctx, e.vmid, 0, 4);
    await e.svc.vmsIowait(e.ctx, e.vmid);
    await e.store.close();
    const store = await PersistentStore.open(options);
    const report = await scrub(store);
    expect(report).toMatchObject({ ok: true, pages: 4, mappedButFree: [] });
    await store.close();
  });
});

describe('page-out cycles that overlap', () => {
  it('a failed fdatasync fails the cycle written while it ran too, and maps neither', async () => {
    let faulty!: FaultyDevice;
    const options = storeOptions(storeDir(), { createBytes: 4096 * (4 * SMALL_CYCLE_PAGES + 8) });
    const store = await PersistentStore.open({ ...options, openDevice: async (path, o) => (faulty = new FaultyDevice(await openDevice(path, o))) });
    // Cycles larger than small ones (which are written and flushed in one job, never overlapping).
    const n = SMALL_CYCLE_PAGES + 1;
    const vmid = await store.createSegment({ type: V_WORKING, options: 0, extent: 2 * n * PAGE, uid: 0, gid: 0, mode: 0o600 });
    const pages = (from: number, version: number) => Array.from({ length: n }, (_, i) => ({ vmid, pno: from + i, data: page(version) }));
    // Only the first fdatasync fails: the second cycle's own flush succeeds, yet its writes may
    // have been written back (and lost) by the failed one, which Linux reports just once.
    const datasync = faulty.datasync.bind(faulty);
    let syncs = 0;
    faulty.datasync = () => (syncs++ === 0 ? Promise.reject(Object.assign(new Error('EIO: injected'), { code: 'EIO' })) : datasync());
    expect(store.reserveSlots(2 * n)).toBe(true);
    const first = store.writePages(pages(0, 1));
    await new Promise((r) => setImmediate(r)); // the first cycle is being written
    const second = store.writePages(pages(n, 2));
    await expect(first.complete).rejects.toMatchObject({ code: 'EIO' });
    await expect(second.complete).rejects.toMatchObject({ code: 'EIO', detail: expect.stringMatching(/written before it failed/) });
    expect(store.mappedPages()).toBe(0);
    expect(store.slotStats).toMatchObject({ mapped: 0, inFlight: 0, reserved: 2 * n });
    // Nothing is left stuck: the next page-out goes through.
    await store.writePages([{ vmid, pno: 1, data: page(3) }]).complete;
    expect(store.mappedPages()).toBe(1);
    await store.close();
  });
});

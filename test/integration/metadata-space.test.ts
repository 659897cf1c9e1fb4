import { execFileSync } from 'node:child_process';
import { closeSync, openSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING, type PagerClient } from '../../src/client/index.js';
import { startDaemon } from '../support/daemon.js';
import { isRoot } from '../support/loop-device.js';
import { mulberry32 } from '../support/random.js';
import { storeDir } from '../support/store-files.js';

const PAGE = 4096;
const SEGMENT_PAGES = 32768;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

/** A page whose bytes name its number and version. */
function versioned(pno: number, version: number): Uint8Array {
  const bytes = new Uint8Array(PAGE);
  new DataView(bytes.buffer).setUint32(0, pno);
  new DataView(bytes.buffer).setUint32(4, version);
  return bytes;
}

/** Writes `pages` with `version` and pages them out; answers vms_iowait's outcome. */
async function pageOut(c: PagerClient, vmid: number, pages: number[], version: number): Promise<string> {
  await Promise.all(pages.map((p) => c.vmMove(vmid, p * PAGE, PAGE, UIO_WRITE, uio(versioned(p, version)))));
  await Promise.all(pages.map((p) => c.vmWritep(vmid, p, 1)));
  return c.vmsIowait(vmid).then(
    () => 'ok',
    (err: { code?: string; reason?: string }) => `${err.code} ${err.reason}`,
  );
}

describe('the metadata database manages its own space', () => {
  it.runIf(isRoot)('on a 16 MiB state directory: page-outs go on as the WAL would outgrow it, fail while the file system is full, and recover when space returns, without a restart', async () => {
    const small = storeDir('pagerd-small-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', small]);
    try {
      const elsewhere = storeDir();
      writeFileSync(join(elsewhere, 'backing'), ''); // an explicit device must exist; empty, it is sized at first start
      const daemon = await startDaemon({
        stateDir: small,
        socket: join(elsewhere, 'pagerd.sock'),
        memory: '16MiB',
        args: ['--device', join(elsewhere, 'backing')],
        env: { PAGERD_STORE_CREATE_BYTES: '256MiB' },
      });
      const c = await daemon.client();
      const vmid = await c.vmsCreate(V_WORKING, SEGMENT_PAGES * PAGE);
      const random = mulberry32(7);
      const acked = new Map<number, number>();
      const pick = (): number[] => [...new Set(Array.from({ length: 64 }, () => Math.floor(random() * SEGMENT_PAGES)))];

      // 300 cycles rewrite page-map rows all over: about 4 times the file system in WAL frames.
      let largestWal = 0;
      for (let version = 1; version <= 300; version++) {
        const pages = pick();
        expect(await pageOut(c, vmid, pages, version)).toBe('ok');
        for (const p of pages) acked.set(p, version);
        largestWal = Math.max(largestWal, statSync(join(small, 'pagerd.sqlite-wal')).size);
      }
      expect(largestWal).toBeLessThan(8 << 20);

      // Full: page-outs fail with EIO, the store does not fail for good. Whatever space the WAL's
      // checkpoints give back, the filler takes at once (another writer on the same file system).
      const filler = join(small, 'filler');
      closeSync(openSync(filler, 'w'));
      const fill = (): void => {
        // The daemon may take blocks between statfs and fallocate (its own commits): ask again for what is left.
        for (let fs = statfsSync(small); fs.bavail > 0; fs = statfsSync(small)) {
          try {
            execFileSync('fallocate', ['-o', String(statSync(filler).size), '-l', String(fs.bavail * fs.bsize), filler], { stdio: 'ignore' });
            return;
          } catch {
            // raced: try again with the new free count
          }
        }
      };
      const whileFull = new Set<string>();
      for (let version = 301; version <= 340; version++) {
        fill();
        whileFull.add(await pageOut(c, vmid, pick(), version));
      }
      expect([...whileFull].every((o) => o === 'ok' || o === 'EIO page-out-failed')).toBe(true);
      expect(whileFull.has('EIO page-out-failed')).toBe(true);
      expect((await c.stats()).storeFailed).toBe(false);

      // Space returns: the same daemon's page-outs succeed again.
      rmSync(filler);
      const last = pick();
      expect(await pageOut(c, vmid, last, 1000)).toBe('ok');
      for (const p of last) acked.set(p, 1000);

      await daemon.kill();
      const again = await startDaemon({ stateDir: small, socket: join(elsewhere, 'pagerd.sock'), memory: '16MiB', args: ['--device', join(elsewhere, 'backing')] });
      const c2 = await again.client();
      const buf = new Uint8Array(PAGE);
      for (const [p, version] of acked) {
        await c2.vmMove(vmid, p * PAGE, PAGE, UIO_READ, uio(buf));
        const view = new DataView(buf.buffer);
        // A page written while the file system was full may be newer than its acknowledged version.
        expect(view.getUint32(0), `page ${p}`).toBe(p);
        expect(view.getUint32(4), `page ${p}`).toBeGreaterThanOrEqual(version);
      }
      await c2.close();
      expect(await again.stop()).toBe(0);
    } finally {
      execFileSync('umount', ['-l', small]);
    }
  }, 180_000);
});

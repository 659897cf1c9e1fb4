import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING } from '../../src/client/index.js';
import { startDaemon } from '../support/daemon.js';

const PAGE = 4096;
const PAGES = 16;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });
const page = (pno: number, version: number): Uint8Array => new Uint8Array(PAGE).fill((pno * 16 + version) & 0xff);

describe('a page-out commit held up in the metadata database', () => {
  it('holds up nothing else: resident reads and writes are answered while it waits, and it completes once the database is free', async () => {
    const daemon = await startDaemon();
    try {
      const c = await daemon.client({ sharedFrames: false });
      const vmid = await c.vmsCreate(V_WORKING, 64 * PAGE);
      for (let p = 0; p < PAGES; p++) await c.vmMove(vmid, p * PAGE, PAGE, UIO_WRITE, uio(page(p, 1)));
      await c.vmWritep(vmid, 0, PAGES);
      await c.vmsIowait(vmid);
      await new Promise((r) => setTimeout(r, 200)); // the store settles its last cycle: nothing of its own is left to commit

      // Another connection takes SQLite's write lock: the next page-out commit waits for it, as
      // for a metadata disk that has stalled.
      const other = new Database(join(daemon.stateDir, 'pagerd.sqlite'));
      other.exec('BEGIN IMMEDIATE');
      let committed = false;
      let iowait: Promise<void>;
      try {
        for (let p = 0; p < PAGES; p++) await c.vmMove(vmid, p * PAGE, PAGE, UIO_WRITE, uio(page(p, 2)));
        await c.vmWritep(vmid, 0, PAGES);
        iowait = c.vmsIowait(vmid).then(() => void (committed = true));
        iowait.catch(() => undefined); // awaited below

        // Requests keep being answered meanwhile: reads of resident pages, a write of another page.
        for (let round = 0; round < 3; round++) {
          for (let p = 0; p < PAGES; p++) {
            const got = new Uint8Array(PAGE);
            await c.vmMove(vmid, p * PAGE, PAGE, UIO_READ, uio(got));
            expect(got).toEqual(page(p, 2));
          }
        }
        await c.vmMove(vmid, 40 * PAGE, PAGE, UIO_WRITE, uio(page(40, 2)));
        expect(committed, 'the page-out completed while its commit could not have run').toBe(false);
      } finally {
        other.exec('ROLLBACK');
        other.close();
      }
      await iowait;
      expect(committed).toBe(true);
      await c.close();

      // What it acknowledged survives a kill -9.
      await daemon.kill();
      const again = await startDaemon({ stateDir: daemon.stateDir });
      try {
        const c2 = await again.client({ sharedFrames: false });
        for (let p = 0; p < PAGES; p++) {
          const got = new Uint8Array(PAGE);
          await c2.vmMove(vmid, p * PAGE, PAGE, UIO_READ, uio(got));
          expect(got).toEqual(page(p, 2));
        }
        await c2.close();
      } finally {
        await again.stop();
      }
    } finally {
      if (daemon.proc.exitCode === null) await daemon.stop();
    }
  });
});

import { spawnSync } from 'node:child_process';
import { openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING, type PagerClient } from '../../src/client/index.js';
import { PersistentStore } from '../../src/store/persistent-store.js';
import { startDaemon } from '../support/daemon.js';
import { mulberry32 } from '../support/random.js';
import { storeOptions } from '../support/store-files.js';

const PAGERCTL = join(import.meta.dirname, '../../dist/src/cli/pagerctl.js');
const PAGE = 4096;
const PAGES = 1024;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

/** Rewrites random pages of its own segment and pages them out, until `running()` says stop. */
async function pageOutLoad(c: PagerClient, seed: number, running: () => boolean): Promise<number> {
  const vmid = await c.vmsCreate(V_WORKING, PAGES * PAGE);
  const random = mulberry32(seed);
  let cycles = 0;
  while (running()) {
    const pages = Array.from({ length: 32 }, () => Math.floor(random() * PAGES));
    await Promise.all(pages.map((p) => c.vmMove(vmid, p * PAGE, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(cycles & 0xff)))));
    await c.vmWritep(vmid, 0, PAGES);
    await c.vmsIowait(vmid);
    cycles++;
  }
  return cycles;
}

describe('pagerctl verify on a live store', () => {
  it('reports nothing under a 4-client page-out load, and still finds a corrupted slot', async () => {
    // A small pool and store: page-outs move pages between slots and reuse freed ones all the time.
    const daemon = await startDaemon({ memory: '2MiB', env: { PAGERD_STORE_CREATE_BYTES: '48MiB' } });
    const clients = await Promise.all(Array.from({ length: 5 }, () => daemon.client()));
    const [checker, ...writers] = clients;
    let loading = true;
    const load = Promise.all(writers.map((c, i) => pageOutLoad(c, i + 1, () => loading)));
    const findings: unknown[] = [];
    let scrubs = 0;
    let pagesChecked = 0;
    const started = Date.now();
    while (Date.now() - started < 8000 || scrubs < 3) {
      const report = await checker.verify();
      scrubs++;
      pagesChecked += report.pages;
      if (!report.ok) findings.push(report);
    }
    loading = false;
    const cycles = (await load).reduce((a, b) => a + b, 0);
    console.log(`verify under load: ${scrubs} scrubs, ${pagesChecked} pages checked, ${cycles} page-out cycles beside them, ${findings.length} reports`);
    expect(cycles).toBeGreaterThan(20);
    expect(findings).toEqual([]);
    await Promise.all(clients.map((c) => c.close()));
    expect(await daemon.stop()).toBe(0);

    // One slot's bytes overwritten on the stopped store: verify names exactly that page.
    const options = storeOptions(daemon.stateDir, { devicePath: join(daemon.stateDir, 'backing'), databasePath: join(daemon.stateDir, 'pagerd.sqlite') });
    const store = await PersistentStore.open(options);
    const [victim] = store.pageBatchAfter(-1, -1, 1);
    const dataOffset = store.dataOffset;
    await store.close();
    const fd = openSync(options.devicePath, 'r+');
    writeSync(fd, Buffer.from('not the page that was written'), 0, 29, dataOffset + victim.slot * PAGE + 100);
    closeSync(fd);
    const again = await startDaemon({ stateDir: daemon.stateDir, memory: '2MiB' });
    const c = await again.client();
    const report = await c.verify();
    expect(report.bad).toEqual([{ vmid: victim.vmid, pno: victim.pno, slot: victim.slot, why: 'checksum mismatch' }]);
    await expect(c.vmMove(victim.vmid, victim.pno * PAGE, PAGE, UIO_READ, uio(new Uint8Array(PAGE)))).rejects.toMatchObject({ code: 'EIO', reason: 'checksum-mismatch' });
    // What an operator sees: the failure counted, and pagerctl verify exits 65 (EX_DATAERR).
    expect(await c.metrics()).toMatch(/^pagerd_checksum_failures_total 1$/m);
    const ctl = spawnSync(process.execPath, [PAGERCTL, '--socket', again.socket, '--json', 'verify'], { encoding: 'utf8' });
    expect(ctl.status).toBe(65);
    expect(JSON.parse(ctl.stdout)).toMatchObject({ ok: false, bad: [{ vmid: victim.vmid, pno: victim.pno }] });
    await c.close();
    expect(await again.stop()).toBe(0);
  }, 120_000);
});

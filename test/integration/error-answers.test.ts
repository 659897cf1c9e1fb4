import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_CLIENT, V_IOWAIT, V_WORKING, type PagerClient } from '../../src/client/index.js';
import { startDaemon } from '../support/daemon.js';
import { failSyscalls, haveStrace } from '../support/fault-injection.js';

const PAGE = 4096;
const page = (byte: number, n = PAGE) => new Uint8Array(n).fill(byte);
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

async function read(c: PagerClient, vmid: number, offset: number, n: number): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  await c.vmMove(vmid, offset, n, UIO_READ, uio(buf));
  return buf;
}

/** Every sync the daemon makes, data and WAL alike, fails with EIO while this runs. */
const SYNCS = ['fsync', 'fdatasync'];

describe('on the real daemon, an error answer changes nothing', () => {
  it('strace, to fail the real syscalls, is installed (.ci/run installs it)', () => {
    expect(haveStrace).toBe(true);
  });

  it.runIf(haveStrace)('vm_releasep and vms_delete answer EIO when the metadata commit fails, and keep every byte, across kill -9', async () => {
    const daemon = await startDaemon();
    const c = await daemon.client();
    const vmid = await c.vmsCreate(V_WORKING, 8 * PAGE);
    await c.vmMove(vmid, 0, 4 * PAGE, UIO_WRITE, uio(page(1, 4 * PAGE)));
    await c.vmWritep(vmid, 0, 4);
    await c.vmsIowait(vmid); // version 1 durable
    await c.vmMove(vmid, 0, 4 * PAGE, UIO_WRITE, uio(page(2, 4 * PAGE))); // version 2 in memory only

    const injection = await failSyscalls(daemon.proc.pid!, SYNCS);
    await expect(c.vmReleasep(vmid, 0, 2)).rejects.toMatchObject({ code: 'EIO', reason: 'metadata-failed' });
    await expect(c.vmsDelete(vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'metadata-failed' });
    expect(await read(c, vmid, 0, 4 * PAGE)).toEqual(page(2, 4 * PAGE));
    await injection.stop();

    expect((await c.stats()).storeFailed).toBe(false);
    await c.vmWritep(vmid, 0, 4);
    await c.vmsIowait(vmid); // version 2 durable now
    await c.vmReleasep(vmid, 0, 1);
    await daemon.kill();
    const again = await startDaemon({ stateDir: daemon.stateDir });
    const c2 = await again.client();
    expect(await read(c2, vmid, 0, PAGE)).toEqual(page(0));
    expect(await read(c2, vmid, PAGE, 3 * PAGE)).toEqual(page(2, 3 * PAGE));
    await c2.close();
    expect(await again.stop()).toBe(0);
  });

  it.runIf(haveStrace)('two clients of one segment both hear a failed page-out; neither is told 0 for it; a failed metadata sync fails the store, and the restart loses nothing acknowledged', async () => {
    const daemon = await startDaemon();
    const a = await daemon.client();
    const b = await daemon.client();
    const vmid = await a.vmsCreate(V_WORKING, 8 * PAGE, 0, 0o660);
    await a.vmMove(vmid, 0, 4 * PAGE, UIO_WRITE, uio(page(0xa, 4 * PAGE)));
    await a.vmWritep(vmid, 0, 4);
    await a.vmsIowait(vmid); // acknowledged
    await a.vmMove(vmid, 0, 4 * PAGE, UIO_WRITE, uio(page(0xc, 4 * PAGE)));
    await b.vmMove(vmid, 4 * PAGE, 4 * PAGE, UIO_WRITE, uio(page(0xb, 4 * PAGE)));

    const injection = await failSyscalls(daemon.proc.pid!, SYNCS);
    // Both started before the first failure can come back (one after the other, the second could
    // find the store failed already and be refused at once, store-failed).
    await Promise.all([a.vmWritep(vmid, 0, 4), b.vmWritep(vmid, 4, 4)]);
    await expect(b.vmsIowait(vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'page-out-failed' });
    await expect(a.vmsIowait(vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'page-out-failed' });
    await injection.stop();

    // Each heard it once; the pages are still modified. The metadata's WAL sync failed: a later
    // sync could succeed with its frames missing, so the store refuses page-outs from now on.
    expect(await a.vmQmodify(vmid)).toBe(true);
    expect((await a.stats()).storeFailed).toBe(true);
    await expect(a.vmWritep(vmid, 0, 8)).rejects.toMatchObject({ code: 'EIO', reason: 'store-failed' });
    expect(await read(a, vmid, 0, 4 * PAGE)).toEqual(page(0xc, 4 * PAGE)); // reads go on
    await daemon.kill();
    const again = await startDaemon({ stateDir: daemon.stateDir });
    const c = await again.client();
    // Each page reads its acknowledged version or a later complete one: never torn, never older.
    for (let pno = 0; pno < 8; pno++) {
      const bytes = await read(c, vmid, pno * PAGE, PAGE);
      const allowed = pno < 4 ? [page(0xa), page(0xc)] : [page(0), page(0xb)];
      expect(allowed, `page ${pno}`).toContainEqual(bytes);
    }
    await c.close();
    expect(await again.stop()).toBe(0);
  });
});

describe('a stop that cannot save every modified page says so', () => {
  it.runIf(haveStrace)('SIGTERM while the device fails every sync: exit 74 and one line saying pages were lost, not 0', async () => {
    const daemon = await startDaemon();
    const c = await daemon.client();
    const vmid = await c.vmsCreate(V_WORKING, 8 * PAGE);
    await c.vmMove(vmid, 0, 8 * PAGE, UIO_WRITE, uio(page(0xd, 8 * PAGE)));
    const injection = await failSyscalls(daemon.proc.pid!, SYNCS);
    try {
      expect(await daemon.stop()).toBe(74);
    } finally {
      await injection.stop();
    }
    const said = /^pagerd: .*the modified pages of 1 segment could not be paged out and are lost/m;
    for (const deadline = Date.now() + 5000; !said.test(daemon.output()) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20)); // stderr may trail the exit
    expect(daemon.output()).toMatch(said);
  });

  it("SIGTERM with a client file system's modified pages its gone device never took: exit 74, not 0", async () => {
    const daemon = await startDaemon();
    const fsClient = await daemon.client();
    const device = await fsClient.vmMounte(async (io) => {
      if (io.op === 'write') throw Object.assign(new Error('no space'), { errno: 28 });
    });
    const vmid = await fsClient.vmsCreate(V_CLIENT, 8 * PAGE, { device });
    await fsClient.vmMove(vmid, 0, 8 * PAGE, UIO_WRITE, uio(page(0xe, 8 * PAGE)));
    await fsClient.close(); // the file system goes: its segment's modified pages are stranded
    expect(await daemon.stop()).toBe(74);
    const said = /^pagerd: .*the modified pages of 1 segment could not be paged out and are lost/m;
    for (const deadline = Date.now() + 5000; !said.test(daemon.output()) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20)); // stderr may trail the exit
    expect(daemon.output()).toMatch(said);
  });
});

describe('on the real daemon, racing clients cannot wedge or kill it', () => {
  it('a segment deleted while another client waits in vm_readp(V_IOWAIT): EINVAL or 0, no frame left behind, the daemon serves on', async () => {
    const daemon = await startDaemon({ memory: '1MiB' }); // 256 frames
    const a = await daemon.client();
    const b = await daemon.client();
    const other = await a.vmsCreate(V_WORKING, 512 * PAGE);
    let einval = 0;
    // At least 12 rounds, and on until the race was met (a delete inside the wait), up to 60.
    for (let round = 0; round < 60 && (round < 12 || einval === 0); round++) {
      const s = await a.vmsCreate(V_WORKING, 64 * PAGE, 0, 0o660);
      await a.vmMove(s, 0, PAGE, UIO_WRITE, uio(page(round + 1)));
      await a.vmWritep(s, 0, 1);
      const readp = a.vmReadp(s, 0, 32, V_IOWAIT).then(
        () => 'ok',
        (err: { code?: string; reason?: string }) => `${err.code} ${err.reason}`,
      );
      await b.vmsDelete(s);
      const outcome = await readp;
      expect(['ok', 'EINVAL no-such-segment']).toContain(outcome);
      if (outcome !== 'ok') einval++;
      // Unrelated work that makes the clock hand pass over every frame (steals and page-outs).
      await a.vmMove(other, 0, 512 * PAGE, UIO_WRITE, uio(page(round, 512 * PAGE)));
      expect(await read(a, other, 511 * PAGE, PAGE)).toEqual(page(round));
    }
    expect(daemon.proc.exitCode).toBe(null);
    await a.vmsDelete(other);
    const stats = (await a.stats()) as { frames: number; census: { free: number } };
    expect(stats.census.free).toBe(stats.frames); // no frame outlived its segment
    expect(einval).toBeGreaterThan(0); // the race was met at least once
    await a.close();
    await b.close();
    expect(await daemon.stop()).toBe(0);
  });
});

describe('on the real daemon, a move is checked whole', () => {
  it('a move past the extent larger than a message answers EFAULT with nothing moved', async () => {
    const daemon = await startDaemon();
    const c = await daemon.client();
    const vmid = await c.vmsCreate(V_WORKING, 4 << 20);
    const data = page(9, 3 << 20); // 3 MiB at 2 MiB: the first 2 MiB piece fits, the whole does not
    const u = uio(data);
    await expect(c.vmMove(vmid, 2 << 20, data.length, UIO_WRITE, u)).rejects.toMatchObject({ code: 'EFAULT', reason: 'beyond-extent' });
    expect(u.resid).toBe(data.length);
    expect(u.offset).toBe(0);
    expect((await read(c, vmid, 2 << 20, 2 << 20)).every((b) => b === 0)).toBe(true); // nothing was written
    const back = uio(new Uint8Array(3 << 20));
    await expect(c.vmMove(vmid, 2 << 20, 3 << 20, UIO_READ, back)).rejects.toMatchObject({ code: 'EFAULT', reason: 'beyond-extent' });
    expect(back.resid).toBe(3 << 20);
    await expect(c.vmUiomove(vmid, 3 << 20, UIO_WRITE, { ...uio(data), offset: 2 << 20 })).rejects.toMatchObject({ code: 'EFAULT', reason: 'beyond-extent' });
    // rw that is neither READ nor WRITE, at the extent: EFAULT comes first (SPEC order).
    await expect(c.vmMove(vmid, (4 << 20) - 10, 100, 7, uio(new Uint8Array(100)))).rejects.toMatchObject({ code: 'EFAULT', reason: 'beyond-extent' });
    await expect(c.vmMove(vmid, 0, 100, 7, uio(new Uint8Array(100)))).rejects.toMatchObject({ code: 'EINVAL', reason: 'bad-rw' });
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });
});

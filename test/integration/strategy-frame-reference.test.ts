import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_CLIENT, V_WORKING, type PagerClient, type StrategyRequest } from '../../src/client/index.js';
import { encodeRequestFrame } from '../../src/protocol/codec.js';
import { deleteClientSegments } from '../support/client-segments.js';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';
import { RawConnection } from '../support/raw-connection.js';

const PAGE = 4096;
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A promise the test settles when it chooses: `opened` resolves at `open()`. */
function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

async function until(condition: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}

/** strategy.timeoutMs here. */
const TIMEOUT_MS = 2000;

/** Frames held for failed devices' unanswered writes by frame reference, all uids together. */
async function heldForFailedDevices(c: PagerClient): Promise<number> {
  return Object.values((await c.stats()).framesHeldForFailedDevices as Record<string, number>).reduce((a, b) => a + b, 0);
}

let daemon: RunningDaemon;
beforeAll(async () => {
  daemon = await startDaemon({ memory: '16MiB', env: { PAGERD_STRATEGY_TIMEOUT_MS: String(TIMEOUT_MS) } });
});
afterAll(async () => {
  await deleteClientSegments(daemon);
  expect(await daemon.stop()).toBe(0);
});

describe('page-outs by frame reference (vmMounte with sharedFrames)', () => {
  it('a file system of 4 MiB through the pool reads back exactly: its page-outs named frames, whose bytes it read from its mapping', async () => {
    const fsClient = await daemon.client();
    const pages = new Map<number, Uint8Array>();
    let writes = 0;
    const device = await fsClient.vmMounte(
      async (io) => {
        for (let i = 0; i < io.npages; i++) {
          const bytes = io.data.subarray(i * PAGE, (i + 1) * PAGE);
          if (io.op === 'read') bytes.set(pages.get(io.page + i) ?? new Uint8Array(PAGE));
          else pages.set(io.page + i, Uint8Array.from(bytes));
        }
        if (io.op === 'write') writes++;
      },
      { sharedFrames: true },
    );
    expect((await fsClient.devices()).find((d) => d.id === device)).toMatchObject({ sharedFrames: true });
    const user = await daemon.client();
    const PAGES = 1024;
    const vmid = await fsClient.vmsCreate(V_CLIENT, PAGES * PAGE, { device, mode: 0o666 });
    const page = (p: number): Uint8Array => new Uint8Array(PAGE).fill((p * 7 + 1) % 251);
    for (let p = 0; p < PAGES; p += 64) {
      const chunk = new Uint8Array(64 * PAGE);
      for (let i = 0; i < 64; i++) chunk.set(page(p + i), i * PAGE);
      await user.vmMove(vmid, p * PAGE, chunk.length, UIO_WRITE, uio(chunk));
    }
    await user.vmWritep(vmid, 0, PAGES);
    await user.vmsIowait(vmid);
    await user.vmFlushp(vmid, 0, PAGES); // every frame let go: the reads below come from the file system
    expect(writes).toBeGreaterThan(0);
    const wrong = Array.from({ length: PAGES }, (_, p) => p).filter((p) => !Buffer.from(pages.get(p) ?? []).equals(page(p)));
    expect(wrong, 'pages the file system holds wrong').toEqual([]);
    const back = new Uint8Array(PAGE);
    for (const p of [0, 1, 511, 1023]) {
      await user.vmMove(vmid, p * PAGE, PAGE, UIO_READ, uio(back));
      expect(back).toEqual(page(p));
    }
    await user.vmsDelete(vmid);
    await fsClient.vmUmount(device);
    await Promise.all([user.close(), fsClient.close()]);
  });

  it("a page-out's frame is held until the strategy answers: another writer of the page waits, the strategy's own write answers EDEADLK, and the bytes it reads are those the page-out started with", async () => {
    const fsClient = await daemon.client();
    const writer = await daemon.client();
    let vmid = 0;
    const answer = gate(); // the strategy answers once the test opens it
    const written: StrategyRequest[] = [];
    const ownWrites: unknown[] = [];
    const device = await fsClient.vmMounte(
      async (io) => {
        if (io.op === 'read') return; // zeros
        ownWrites.push(await fsClient.vmMove(vmid, io.page * PAGE, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(9))).catch((err: unknown) => err));
        await answer.opened;
        written.push({ ...io, data: Uint8Array.from(io.data) });
      },
      { sharedFrames: true },
    );
    vmid = await fsClient.vmsCreate(V_CLIENT, 4 * PAGE, { device, mode: 0o666 });
    await writer.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(1)));
    await writer.vmWritep(vmid, 0, 1);
    await until(() => ownWrites.length === 1);
    expect(ownWrites[0]).toMatchObject({ code: 'EDEADLK', errno: 35, reason: 'deadlock' });

    let rewritten = false;
    const rewrite = writer.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(2))).then(() => (rewritten = true));
    await sleep(300);
    expect(rewritten).toBe(false);
    answer.open();
    await rewrite;
    await writer.vmsIowait(vmid);
    expect(written).toHaveLength(1);
    expect(written[0].data.every((b) => b === 1)).toBe(true);

    // The page written meanwhile is modified again: its next page-out carries it.
    await writer.vmWritep(vmid, 0, 1);
    await writer.vmsIowait(vmid);
    expect(written).toHaveLength(2);
    expect(written[1].data.every((b) => b === 2)).toBe(true);
    await writer.vmsDelete(vmid);
    await fsClient.vmUmount(device);
    await Promise.all([writer.close(), fsClient.close()]);
  });

  it('a page-out by frame reference still at the strategy of the device a segment was rebound from: that connection\'s write of the page answers EDEADLK', async () => {
    const fsClient = await daemon.client();
    const writer = await daemon.client();
    const answer = gate(); // the strategy answers once the test opens it
    let asked = false;
    const first = await fsClient.vmMounte(
      async (io) => {
        if (io.op === 'read') return;
        asked = true;
        await answer.opened;
      },
      { sharedFrames: true },
    );
    const second = await fsClient.vmMounte(async () => undefined, { sharedFrames: true });
    const vmid = await fsClient.vmsCreate(V_CLIENT, 4 * PAGE, { device: first, mode: 0o666 });
    await writer.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(1)));
    await writer.vmWritep(vmid, 0, 1);
    await until(() => asked);
    await fsClient.vmSetdevid(vmid, second); // the write in flight completes on the first device
    await expect(fsClient.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(2)))).rejects.toMatchObject({ code: 'EDEADLK' });
    answer.open();
    await writer.vmsIowait(vmid);
    await writer.vmsDelete(vmid);
    await Promise.all([writer.close(), fsClient.close()]);
  });

  it("a file system that goes away with a page-out unanswered: the page-out fails with EIO at once, the waiting writer goes on (its page moves to another frame), and the frame keeps the page-out's bytes while the file system's process lives", async () => {
    const fsClient = await daemon.client();
    const writer = await daemon.client();
    let held: Uint8Array | undefined;
    const device = await fsClient.vmMounte(
      (io) => {
        if (io.op === 'write') held = io.pages![0]; // still readable after the device is gone: the mapping stays
        return new Promise(() => undefined); // never answers
      },
      { sharedFrames: true },
    );
    const vmid = await fsClient.vmsCreate(V_CLIENT, 4 * PAGE, { device, mode: 0o666 });
    await writer.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(1)));
    await writer.vmWritep(vmid, 0, 1);
    await until(() => held !== undefined);
    let rewritten = false;
    const rewrite = writer.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(2))).then(() => (rewritten = true));
    await sleep(200);
    expect(rewritten).toBe(false); // the page-out is at the file system
    await fsClient.close();
    await expect(writer.vmsIowait(vmid)).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' });
    expect(await rewrite).toBe(true);
    await sleep(2 * TIMEOUT_MS);
    expect(held!.every((b) => b === 1), "the frame the file system was told to read holds the page-out's bytes").toBe(true);
    expect(await heldForFailedDevices(writer)).toBe(1);
    const back = new Uint8Array(PAGE);
    await writer.vmMove(vmid, 0, PAGE, UIO_READ, uio(back)); // still resident, the only copy
    expect(back.every((b) => b === 2)).toBe(true);
    await writer.vmsDelete(vmid);
    await writer.close();
  });

  it('a page whose frame a failed device may still read goes out through a new device, and is written again: nothing waits for the failed one', async () => {
    const gone = await daemon.client();
    const fsClient = await daemon.client();
    const writer = await daemon.client();
    let asked = false;
    const failed = await gone.vmMounte(
      (io) => {
        asked ||= io.op === 'write';
        return new Promise(() => undefined);
      },
      { sharedFrames: true },
    );
    const written: number[] = [];
    const working = await fsClient.vmMounte(async (io) => void written.push(io.pages![0][0]), { sharedFrames: true });
    const vmid = await gone.vmsCreate(V_CLIENT, 4 * PAGE, { device: failed, mode: 0o666 });
    await writer.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(1)));
    await writer.vmWritep(vmid, 0, 1);
    await until(() => asked);
    await gone.close(); // its frame stays held: this process lives
    await expect(writer.vmsIowait(vmid)).rejects.toMatchObject({ code: 'EIO' });
    await fsClient.vmSetdevid(vmid, working);
    await writer.vmWritep(vmid, 0, 1); // from the same frame, held by both
    await writer.vmsIowait(vmid);
    expect(written).toEqual([1]);
    const rewrite = writer.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(2)));
    await expect(Promise.race([rewrite.then(() => 'written'), sleep(TIMEOUT_MS / 2).then(() => 'still waiting')])).resolves.toBe('written');
    await writer.vmWritep(vmid, 0, 1);
    await writer.vmsIowait(vmid);
    expect(written).toEqual([1, 2]);
    await writer.vmsDelete(vmid);
    await fsClient.vmUmount(working);
    await Promise.all([writer.close(), fsClient.close()]);
  });

  it("the frame of a page released after its device failed under a write by frame reference is no other page's while the file system may still read it", async () => {
    const fsClient = await daemon.client();
    const other = await daemon.client();
    let held: Uint8Array | undefined;
    const device = await fsClient.vmMounte(
      (io) => {
        if (io.op === 'write') held = io.pages![0];
        return new Promise(() => undefined);
      },
      { sharedFrames: true },
    );
    const vmid = await fsClient.vmsCreate(V_CLIENT, 4 * PAGE, { device, mode: 0o666 });
    await other.vmMove(vmid, 0, PAGE, UIO_WRITE, uio(new Uint8Array(PAGE).fill(7)));
    await other.vmWritep(vmid, 0, 1);
    await until(() => held !== undefined);
    await fsClient.close(); // the device fails
    await expect(other.vmsIowait(vmid)).rejects.toMatchObject({ code: 'EIO' });
    await other.vmsDelete(vmid); // its frame is discarded
    await sleep(2 * TIMEOUT_MS);
    // New pages take frames, the ones freed last first.
    const working = await other.vmsCreate(V_WORKING, 64 * PAGE);
    await other.vmMove(working, 0, 64 * PAGE, UIO_WRITE, uio(new Uint8Array(64 * PAGE).fill(3)));
    expect(held!.every((b) => b === 7)).toBe(true);
    await other.vmsDelete(working);
    await other.close();
  });

  it('a late answer lets the frames go; while strategy.maxStrandedShare of the pool is lent by frame reference, page-outs are sent bytes', async () => {
    // 4096 frames, a share of 16.
    const small = await startDaemon({ memory: '16MiB', env: { PAGERD_STRATEGY_TIMEOUT_MS: String(TIMEOUT_MS), PAGERD_STRATEGY_MAX_STRANDED_SHARE: '.004' } });
    try {
      const fsClient = await small.client();
      const writer = await small.client();
      const late = gate();
      const stalled = await fsClient.vmMounte(async () => await late.opened, { sharedFrames: true });
      const byFrames: boolean[] = [];
      const working = await fsClient.vmMounte(async (io) => void byFrames.push(io.pages !== undefined), { sharedFrames: true });
      const first = await fsClient.vmsCreate(V_CLIENT, 16 * PAGE, { device: stalled, mode: 0o666 });
      const second = await fsClient.vmsCreate(V_CLIENT, 16 * PAGE, { device: working, mode: 0o666 });
      const write = async (vmid: number): Promise<void> => {
        await writer.vmMove(vmid, 0, 16 * PAGE, UIO_WRITE, uio(new Uint8Array(16 * PAGE).fill(5)));
        await writer.vmWritep(vmid, 0, 16);
      };
      await write(first);
      await expect(writer.vmsIowait(first)).rejects.toMatchObject({ code: 'EIO', reason: 'device-gone' }); // timed out
      expect(await heldForFailedDevices(writer)).toBe(16);
      await write(second);
      await writer.vmsIowait(second);
      late.open();
      await until(() => byFrames.length === 1);
      await until(async () => (await heldForFailedDevices(writer)) === 0);
      await write(second);
      await writer.vmsIowait(second);
      expect(byFrames, 'sent bytes while 16 frames were held for the failed device, frames once its late answer came').toEqual([false, true]);
      await Promise.all([writer.close(), fsClient.close()]);
    } finally {
      await deleteClientSegments(small);
      expect(await small.stop()).toBe(0);
    }
  });

  it('a connection the shared frames are not offered to mounts as usual, and is refused a device by frame reference (EACCES)', async () => {
    const closed = await startDaemon({ memory: '16MiB', env: { PAGERD_SERVER_SHARED_FRAMES: 'false' } });
    try {
      const c = await closed.client();
      const device = await c.vmMounte(async () => undefined, { sharedFrames: true });
      expect((await c.devices()).find((d) => d.id === device)).toMatchObject({ sharedFrames: false });
      await c.close();
      const raw = await RawConnection.open(closed.socket);
      raw.send(encodeRequestFrame({ id: 1, op: 'vmMounteFrames', args: [] }));
      await raw.until(() => raw.replies.length === 1, 5000);
      expect(raw.replies[0].error).toMatchObject({ code: 'EACCES', reason: 'shared-frames-not-offered' });
      raw.close();
    } finally {
      expect(await closed.stop()).toBe(0);
    }
  });
});

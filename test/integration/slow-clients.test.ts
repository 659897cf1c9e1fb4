import { connect as netConnect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_WORKING } from '../../src/client/index.js';
import { encodeHello, encodeRequest } from '../../src/protocol/codec.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { startDaemon } from '../support/daemon.js';
import { RawConnection } from '../support/raw-connection.js';
import { rssBytes } from '../support/rss.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('slow and stalled clients', () => {
  it('pauses, then drops, a client that never reads its replies; memory stays bounded and others are served', async () => {
    const daemon = await startDaemon({
      memory: '8MiB',
      env: { PAGERD_SERVER_MAX_QUEUED_BYTES: '1MiB', PAGERD_SERVER_MAX_IN_FLIGHT: '4', PAGERD_SERVER_STALLED_DROP_MS: '2000' },
    });
    const pid = daemon.proc.pid!;
    const good = await daemon.client();
    const vmid = await good.vmsCreate(V_WORKING, 4 << 20);
    const rssBefore = rssBytes(pid);

    // The stalled client: asks for 300 reads of 1 MiB (300 MiB of replies) and never reads one.
    const stalled = netConnect(daemon.socket);
    await new Promise((r) => stalled.once('connect', r));
    stalled.pause(); // never reads: it would not even see the daemon hang up
    stalled.on('error', () => undefined);
    const dropped = (): boolean => daemon.output().includes('dropping a client that does not read its replies');
    stalled.write(encodeFrame(encodeHello()));
    for (let id = 1; id <= 300; id++) {
      stalled.write(encodeFrame(encodeRequest({ id, op: 'vmMove', args: [vmid, 0, 1 << 20, UIO_READ, 0, 1 << 20, 0, 1 << 20, new Uint8Array(0)] })));
    }

    // Meanwhile a well-behaved client keeps working.
    let served = 0;
    const page = new Uint8Array(4096).fill(7);
    const started = Date.now();
    while (!dropped() && Date.now() - started < 10_000) {
      await good.vmMove(vmid, 0, 4096, UIO_WRITE, { iov: [page], offset: 0, resid: 4096, segflg: 0 });
      served++;
      await sleep(20);
    }
    const peak = rssBytes(pid);
    expect(dropped()).toBe(true);
    expect(served).toBeGreaterThan(10);
    expect(peak - rssBefore).toBeLessThan(64 * 1024 * 1024);
    expect((await good.stats()).connections).toBe(1);
    stalled.destroy();
    await good.close();
    expect(await daemon.stop()).toBe(0);
  });

  it('serves many clients that send a byte at a time, and drops one that stops mid-frame', async () => {
    const daemon = await startDaemon({ env: { PAGERD_SERVER_PARTIAL_FRAME_TIMEOUT_MS: '1000' } });
    const good = await daemon.client();
    const vmid = await good.vmsCreate(V_WORKING, 1 << 20);
    const dribblers = await Promise.all(Array.from({ length: 40 }, () => RawConnection.open(daemon.socket)));
    const frame = encodeFrame(encodeRequest({ id: 7, op: 'vmQpages', args: [vmid] }));
    const dribbling = dribblers.map(async (conn) => {
      for (const byte of frame) {
        conn.send(Uint8Array.of(byte));
        await sleep(5);
      }
      return conn.until(() => conn.replies.length === 1, 5000);
    });
    // While they dribble, a well-behaved client is answered.
    for (let i = 0; i < 20; i++) expect(await good.vmQpages(vmid)).toBe(0);
    expect(await Promise.all(dribbling)).toEqual(new Array(40).fill(true));
    for (const conn of dribblers) expect(conn.replies[0]).toMatchObject({ id: 7, results: [0] });

    const quitter = await RawConnection.open(daemon.socket);
    quitter.send(frame.subarray(0, 6)); // half a frame, then nothing
    expect(await quitter.until(() => quitter.closed, 5000)).toBe(true);
    for (const conn of dribblers) conn.close();
    await good.close();
    expect(await daemon.stop()).toBe(0);
  });
});

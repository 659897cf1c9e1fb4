import { UIO_READ, V_WORKING, UIO_WRITE, type PagerClient } from '../src/client/index.js';
import type { RawClient } from './raw-client.js';
import { percentile } from './stats.js';

const PAGE = 4096;
const TRIPS = 2000;

/** Latencies (µs) of TRIPS one-at-a-time vmMove reads of one resident 4 KiB page. */
export async function pagerdRoundTrips(c: PagerClient): Promise<{ p50: number; p99: number }> {
  const vmid = await c.vmsCreate(V_WORKING, PAGE);
  const buf = new Uint8Array(PAGE).fill(3);
  await c.vmMove(vmid, 0, PAGE, UIO_WRITE, { iov: [buf], offset: 0, resid: PAGE, segflg: 0 });
  const uio = { iov: [buf], offset: 0, resid: PAGE, segflg: 0 };
  const lat: number[] = [];
  for (let i = 0; i < TRIPS; i++) {
    uio.resid = PAGE;
    uio.offset = 0;
    const t = process.hrtime.bigint();
    await c.vmMove(vmid, 0, PAGE, UIO_READ, uio);
    lat.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  await c.vmsDelete(vmid);
  return { p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

/** The same over a raw socket: a small request, 4 KiB back. */
export async function rawRoundTrips(raw: RawClient): Promise<{ p50: number; p99: number }> {
  const lat: number[] = [];
  for (let i = 0; i < TRIPS; i++) {
    const t = process.hrtime.bigint();
    await raw.request(64, PAGE);
    lat.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return { p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

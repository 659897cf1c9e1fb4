import { describe, expect, it } from 'vitest';
import { V_WORKING } from '../../src/constants.js';
import { PersistentStore } from '../../src/store/persistent-store.js';
import { mulberry32 } from '../support/random.js';
import { SimulatedDevice, SimulatedDisk } from '../support/simulated-device.js';
import { removeStoreDir, storeDir, storeOptions } from '../support/store-files.js';

const PAGE = 4096;
const PAGES = 8;

/** A page's bytes for a version (distinct in every sector, so a torn mix is visible). */
function versionBytes(version: number): Uint8Array {
  const data = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) data[i] = (version * 31 + (i >> 9) * 7 + 1) & 0xff || 1;
  return data;
}

/**
 * Power lost again and again on one store: each life opens what the last one left, writes a few
 * cycles of page-outs, and dies after a random number of device operations. Every open must
 * succeed (the device's cycle record and the metadata always belong together after a real crash)
 * and every page must read its last acknowledged version or a later one.
 */
async function lives(seed: number, count: number): Promise<string[]> {
  const random = mulberry32(seed);
  const disk = new SimulatedDisk(PAGE * 65);
  const dir = storeDir('pagerd-repeated-');
  const options = storeOptions(dir, { maxBatchPages: 2 });
  const acked = new Map<number, number>(); // pno -> last acknowledged version
  const written = new Map<number, Set<number>>(); // pno -> every version ever written
  let version = 0;
  let vmid = 0;
  const problems: string[] = [];
  try {
    for (let life = 0; life < count; life++) {
      const device = new SimulatedDevice(disk, random);
      let store: PersistentStore;
      try {
        store = await PersistentStore.open({ ...options, openDevice: async () => device });
        await store.pageMapChecked;
      } catch (err) {
        problems.push(`seed ${seed}, life ${life}: ${(err as Error).message}`);
        break;
      }
      const buf = new Uint8Array(PAGE);
      for (let p = 0; p < PAGES && vmid !== 0; p++) {
        await store.readPage(vmid, p, buf).catch((err: Error) => problems.push(`seed ${seed}, life ${life}, page ${p}: ${err.message}`));
        const got = Buffer.from(buf);
        const ok = (v: number): boolean => got.equals(Buffer.from(versionBytes(v)));
        const last = acked.get(p);
        const candidates = [...(written.get(p) ?? [])].filter((v) => last === undefined || v >= last);
        if (!(candidates.some(ok) || (last === undefined && buf.every((b) => b === 0)))) problems.push(`seed ${seed}, life ${life}: page ${p} reads no version at or after ${last}`);
      }
      if (vmid === 0) vmid = await store.createSegment({ type: V_WORKING, options: 0, extent: PAGES * PAGE, uid: 0, gid: 0, mode: 0o600 });
      device.ops = 0;
      device.crashAfter = 1 + Math.floor(random() * 12);
      device.onDeath = () => void store.abort();
      const inFlight: Promise<unknown>[] = [];
      for (let batch = 0; batch < 4 && !device.dead; batch++) {
        const pages = [Math.floor(random() * PAGES), Math.floor(random() * PAGES)].filter((p, i, a) => a.indexOf(p) === i);
        if (!store.reserveSlots(pages.length)) break;
        const versions = pages.map(() => ++version);
        pages.forEach((p, i) => written.set(p, (written.get(p) ?? new Set()).add(versions[i])));
        const ticket = store.writePages(pages.map((pno, i) => ({ vmid, pno, data: versionBytes(versions[i]) })));
        inFlight.push(ticket.complete.then(() => pages.forEach((p, i) => acked.set(p, Math.max(acked.get(p) ?? 0, versions[i]))), () => undefined));
        if (random() < 0.5) await Promise.allSettled(inFlight);
      }
      await Promise.allSettled(inFlight);
      device.crash();
      await store.abort();
    }
  } finally {
    removeStoreDir(dir);
  }
  return problems;
}

describe('repeated power loss', () => {
  it('every open after every crash succeeds and reads what was acknowledged, over 200 seeds of 6 lives each', async () => {
    const problems: string[] = [];
    for (let seed = 1; seed <= 200 && problems.length === 0; seed++) problems.push(...(await lives(seed, 6)));
    expect(problems).toEqual([]);
  }, 120_000);
});

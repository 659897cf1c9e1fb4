import { describe, expect, it } from 'vitest';
import { V_WORKING } from '../../src/constants.js';
import { PersistentStore } from '../../src/store/persistent-store.js';
import { SimulatedDevice, SimulatedDisk } from '../support/simulated-device.js';
import { removeStoreDir, storeDir, storeOptions } from '../support/store-files.js';
import { mulberry32 } from '../support/random.js';

/**
 * Power loss, deterministically: the store runs on a simulated device that dies after k
 * operations; its unsynced writes are then dropped, torn or reordered at random, and the store is
 * reopened on what reached the disk. Every acknowledged page must read back exactly (its last
 * acknowledged version, or a later one), no page may be torn or mixed (no checksum failure, no
 * bytes that were never a version of it), and every acknowledged release must read as zeros
 * (or a later write).
 */

const PAGE = 4096;
const PAGES = 6;

/** One event in a page's history, in call order. */
interface Event {
  content: Uint8Array; // zeros for a release
  acked: boolean;
}

type Op = { kind: 'write'; pno: number; version: number } | { kind: 'release'; first: number; count: number } | { kind: 'settle' };

function makeOps(random: () => number, length: number): Op[] {
  const ops: Op[] = [];
  let version = 0;
  for (let i = 0; i < length; i++) {
    const r = random();
    if (r < 0.65) ops.push({ kind: 'write', pno: Math.floor(random() * PAGES), version: ++version });
    else if (r < 0.85) {
      const first = Math.floor(random() * PAGES);
      ops.push({ kind: 'release', first, count: 1 + Math.floor(random() * (PAGES - first)) });
    } else ops.push({ kind: 'settle' });
  }
  return ops;
}

/** A version's bytes: distinct per version, and different in every sector (a torn mix is visible). */
function versionBytes(version: number): Uint8Array {
  const data = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) data[i] = (version * 31 + (i >> 9) * 7 + 1) & 0xff || 1;
  return data;
}

async function run(seed: number, ops: Op[], crashAfter: number): Promise<{ ops: number; problems: string[] }> {
  const random = mulberry32(seed);
  const disk = new SimulatedDisk(PAGE * 65);
  const dir = storeDir('pagerd-powerloss-');
  const options = storeOptions(dir, { maxBatchPages: 4 });
  const device = new SimulatedDevice(disk, random);
  const store = await PersistentStore.open({ ...options, openDevice: async () => device });
  const vmid = await store.createSegment({ type: V_WORKING, options: 0, extent: PAGES * PAGE, uid: 0, gid: 0, mode: 0o600 });
  device.ops = 0;
  device.crashAfter = crashAfter;
  device.onDeath = () => void store.abort(); // the process dies with the power: no metadata commit after it

  const history: Event[][] = Array.from({ length: PAGES }, () => []);
  const inFlight: Promise<unknown>[] = [];
  for (const op of ops) {
    if (device.dead) break;
    if (op.kind === 'write') {
      const event: Event = { content: versionBytes(op.version), acked: false };
      history[op.pno].push(event);
      if (!store.reserveSlots(1)) throw new Error('test store too small');
      const ticket = store.writePages([{ vmid, pno: op.pno, data: Uint8Array.from(event.content) }]);
      inFlight.push(ticket.complete.then(() => (event.acked = true), () => undefined));
    } else if (op.kind === 'release') {
      const events = Array.from({ length: op.count }, (_, i) => {
        const e: Event = { content: new Uint8Array(PAGE), acked: false };
        history[op.first + i].push(e);
        return e;
      });
      try {
        store.releasePages(vmid, op.first, op.count);
        events.forEach((e) => (e.acked = true));
      } catch {
        // refused: not acknowledged
      }
    } else {
      await Promise.allSettled(inFlight.splice(0));
    }
  }
  await Promise.allSettled(inFlight);
  const used = device.ops;
  device.crash();
  await store.abort();

  const problems: string[] = [];
  const reopened = await PersistentStore.open({ ...options, openDevice: async () => new SimulatedDevice(disk, random) });
  try {
    if (reopened.recoveryCheck !== 'ok') problems.push(`integrity check: ${reopened.recoveryCheck}`);
    for (let pno = 0; pno < PAGES; pno++) {
      const events = history[pno];
      const lastAcked = events.map((e) => e.acked).lastIndexOf(true);
      const allowed = lastAcked < 0 ? [new Uint8Array(PAGE), ...events.map((e) => e.content)] : events.slice(lastAcked).map((e) => e.content);
      const got = new Uint8Array(PAGE);
      try {
        await reopened.readPage(vmid, pno, got);
      } catch (err) {
        problems.push(`page ${pno}: ${(err as Error).message}`);
        continue;
      }
      if (!allowed.some((a) => Buffer.from(a).equals(got))) {
        problems.push(`page ${pno}: reads bytes that are not its last acknowledged version or a later one (${lastAcked < 0 ? 'none acknowledged' : `acknowledged event ${lastAcked} of ${events.length}`})`);
      }
    }
  } finally {
    await reopened.close();
    removeStoreDir(dir);
  }
  return { ops: used, problems };
}

describe('power loss on a simulated device', () => {
  it('loses nothing acknowledged and tears nothing, at every crash point of short sequences', async () => {
    const failures: string[] = [];
    let runs = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const ops = makeOps(mulberry32(seed * 7919), 8);
      const { ops: total } = await run(seed, ops, Infinity);
      for (let k = 0; k <= total; k++) {
        const { problems } = await run(seed, ops, k);
        runs++;
        if (problems.length > 0) failures.push(`seed ${seed}, crash after ${k} of ${total} device operations: ${problems.join('; ')}`);
      }
    }
    expect(runs).toBeGreaterThan(200);
    expect(failures.slice(0, 5)).toEqual([]);
  }, 300_000);

  it('loses nothing acknowledged and tears nothing, over 1000 random seeds and crash points', async () => {
    const failures: string[] = [];
    for (let seed = 1000; seed < 2000; seed++) {
      const random = mulberry32(seed);
      const ops = makeOps(random, 6 + Math.floor(random() * 20));
      const crashAfter = Math.floor(random() * 40);
      const { problems } = await run(seed, ops, crashAfter);
      if (problems.length > 0) failures.push(`seed ${seed}, crash after ${crashAfter}: ${problems.join('; ')}`);
    }
    expect(failures.slice(0, 5)).toEqual([]);
  }, 300_000);
});

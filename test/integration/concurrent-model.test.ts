import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  UIO_READ,
  UIO_WRITE,
  V_CLIENT,
  V_IOWAIT,
  VM_IOACCESSP_MAKE,
  VM_IOACCESSP_PGINWAIT,
  VM_IOACCESSP_PGOUTWAIT,
  VM_IOACCESSP_WAITONLY,
  type PagerClient,
} from '../../src/client/index.js';
import { startDaemon } from '../support/daemon.js';
import { mulberry32 } from '../support/random.js';

const PAGE = 4096;
const SEGMENT_PAGES = 96;
const CLIENTS = 3;
const OPS_PER_CLIENT = Number(process.env.PAGERD_MODEL_OPS ?? 1000);
const uio = (buf: Uint8Array) => ({ iov: [buf], offset: 0, resid: buf.length, segflg: 0 });

/**
 * What the daemon may answer: for every page, the versions anyone ever wrote there (a read may
 * see any of them, or zeros: writes, releases and reads race between connections), and for every
 * call the outcomes its documented errors allow given that any segment may be deleted under it.
 */
class Model {
  readonly segments: number[] = [];
  private readonly written = new Map<string, Set<number>>();

  wrote(vmid: number, pno: number, version: number): void {
    const key = `${vmid}:${pno}`;
    let versions = this.written.get(key);
    if (versions === undefined) this.written.set(key, (versions = new Set()));
    versions.add(version);
  }

  /** The page's bytes are zeros or one whole version written there: never torn, never another page's. */
  allowsRead(vmid: number, pno: number, bytes: Uint8Array): boolean {
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    const version = view.getUint32(0);
    if (version === 0) return bytes.every((b) => b === 0);
    if (view.getUint32(4) !== vmid || view.getUint32(8) !== pno) return false;
    if (!bytes.subarray(12).every((b) => b === (version & 0xff))) return false;
    return this.written.get(`${vmid}:${pno}`)?.has(version) ?? false;
  }
}

function pageBytes(vmid: number, pno: number, version: number): Uint8Array {
  const bytes = new Uint8Array(PAGE).fill(version & 0xff);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, version);
  view.setUint32(4, vmid);
  view.setUint32(8, pno);
  return bytes;
}

/** One connection's random walk through the services; answers what the model did not allow. */
async function walk(c: PagerClient, index: number, model: Model, seed: number): Promise<string[]> {
  const random = mulberry32(seed);
  const pick = <T>(items: readonly T[]): T | undefined => (items.length === 0 ? undefined : items[Math.floor(random() * items.length)]);
  const problems: string[] = [];
  let version = index * 1_000_000;
  const attached = new Map<number, number>(); // vaddr -> vmid
  /** Runs a call; a segment deleted under it may answer EINVAL no-such-segment (or region-not-defined). */
  const call = async (what: string, work: () => Promise<unknown>, also: readonly string[] = []): Promise<boolean> => {
    try {
      await work();
      return true;
    } catch (err) {
      const e = err as { code?: string; reason?: string };
      const answer = `${e.code} ${e.reason}`;
      if (!['EINVAL no-such-segment', 'EINVAL region-not-defined', 'ENOMEM no-frame', ...also].includes(answer)) problems.push(`${what}: ${answer}`);
      return false;
    }
  };
  for (let op = 0; op < OPS_PER_CLIENT; op++) {
    const vmid = pick(model.segments);
    const roll = random();
    const pno = Math.floor(random() * (SEGMENT_PAGES - 8));
    // Few segments at a time (2 to 4), created and deleted all along: calls meet deletes often.
    if (vmid === undefined || model.segments.length < 2 || (roll < 0.08 && model.segments.length < 4)) {
      await call('create', async () => model.segments.push(await c.vmsCreate(V_CLIENT, SEGMENT_PAGES * PAGE, 0, 0o660)));
    } else if (roll < 0.3) {
      const v = ++version;
      model.wrote(vmid, pno, v);
      await call('write', () => c.vmMove(vmid, pno * PAGE, PAGE, UIO_WRITE, uio(pageBytes(vmid, pno, v))));
    } else if (roll < 0.48) {
      const buf = new Uint8Array(PAGE);
      if ((await call('read', () => c.vmMove(vmid, pno * PAGE, PAGE, UIO_READ, uio(buf)))) && !model.allowsRead(vmid, pno, buf)) {
        problems.push(`read of page ${pno} of ${vmid} gave bytes nobody wrote there`);
      }
    } else if (roll < 0.52) {
      await call('writep', () => c.vmWritep(vmid, 0, SEGMENT_PAGES));
    } else if (roll < 0.64) {
      // The race of the reproduced crash: a page-out, and a wait on it, while others may delete.
      const v = ++version;
      model.wrote(vmid, pno, v);
      await Promise.all([
        call('write', () => c.vmMove(vmid, pno * PAGE, PAGE, UIO_WRITE, uio(pageBytes(vmid, pno, v)))),
        call('writep', () => c.vmWritep(vmid, pno, 1)),
        call('readp', () => c.vmReadp(vmid, pno, 8, V_IOWAIT)),
      ]);
    } else if (roll < 0.69) {
      await call('ioaccessp', () => c.vmIoaccessp(vmid, pno, 4, pick([VM_IOACCESSP_MAKE | VM_IOACCESSP_PGINWAIT, VM_IOACCESSP_WAITONLY | VM_IOACCESSP_PGOUTWAIT])!));
    } else if (roll < 0.74) {
      await call('iowait', () => c.vmsIowait(vmid));
    } else if (roll < 0.79) {
      await call('releasep', () => c.vmReleasep(vmid, pno, 1 + Math.floor(random() * 4)));
    } else if (roll < 0.83) {
      const vaddr = pick([...attached.keys()]);
      if (vaddr === undefined || random() < 0.5) {
        await call('att', async () => attached.set(await c.vmAtt(vmid, 0, 'write'), vmid));
      } else if (random() < 0.5) {
        await call('write (vm_write)', () => c.vmWrite(vaddr + pno * PAGE, 4 * PAGE, 1));
      } else if (random() < 0.5) {
        await call('release (vm_release)', () => c.vmRelease(vaddr + pno * PAGE, PAGE));
      } else {
        attached.delete(vaddr);
        await call('det', () => c.vmDet(vaddr));
      }
    } else if (roll < 0.9) {
      if (await call('delete', () => c.vmsDelete(vmid))) model.segments.splice(model.segments.indexOf(vmid), 1);
    } else {
      // A burst of writes over many pages: the clock hand steals and launders all the time.
      const writes = Array.from({ length: 16 }, (_, k) => {
        const p = (pno + k * 5) % SEGMENT_PAGES;
        const v = ++version;
        model.wrote(vmid, p, v);
        return call('burst write', () => c.vmMove(vmid, p * PAGE, PAGE, UIO_WRITE, uio(pageBytes(vmid, p, v))));
      });
      await Promise.all(writes);
    }
  }
  return problems;
}

describe('concurrent clients against the model', () => {
  it(`${CLIENTS} connections issue random services at once on a 256-frame pool: the daemon stays up, every answer is allowed, no frame outlives its segment`, async () => {
    const seed = Number(process.env.PAGERD_MODEL_SEED ?? 20261130);
    // On a disk rather than /dev/shm: its fdatasync takes time, so waits on page-outs last long
    // enough for other connections' calls (a delete) to land inside them.
    const stateDir = mkdtempSync(join(tmpdir(), 'pagerd-model-'));
    const daemon = await startDaemon({ stateDir, memory: '1MiB', env: { PAGERD_MEMORY_ALLOC_TIMEOUT_MS: '2000' } });
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => daemon.client()));
    const model = new Model();
    const problems = (await Promise.all(clients.map((c, i) => walk(c, i + 1, model, seed + i)))).flat();
    expect(daemon.proc.exitCode, daemon.output().slice(-2000)).toBe(null);
    expect(problems, `seed ${seed}`).toEqual([]);
    const [c] = clients;
    for (const vmid of model.segments) await c.vmsDelete(vmid);
    const stats = (await c.stats()) as { frames: number; census: { free: number } };
    expect(stats.census.free).toBe(stats.frames);
    await Promise.all(clients.map((client) => client.close()));
    expect(await daemon.stop()).toBe(0);
    rmSync(stateDir, { recursive: true, force: true });
  }, 120_000);
});

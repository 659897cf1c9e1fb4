import { existsSync, readFileSync } from 'node:fs';
import type { PagerClient } from '../../src/client/index.js';
import { UIO_READ } from '../../src/client/index.js';
import { versionPage } from './page-pattern.js';

const PAGE = 4096;

interface PageEvent {
  /** 0 for a release. */
  version: number;
  acked: boolean;
}

/**
 * Checks every page the workers touched against their histories: each page must read exactly as
 * its last acknowledged event (a durable write, or a release: zeros) or a later event; with none
 * acknowledged, as zeros or any event. Answers the violations, and how many pages were checked.
 */
export async function checkHistories(client: PagerClient, files: string[], pages: number): Promise<{ checked: number; acked: number; violations: string[] }> {
  const violations: string[] = [];
  let checked = 0;
  let acked = 0;
  for (const file of files) {
    if (!existsSync(file)) continue; // a worker killed before it wrote anything
    const entries = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    acked += entries.filter((e) => e.t === 'd' || e.t === 'rd').length;
    if (entries.some((e) => e.t === 'bad')) violations.push(`${file}: a worker read bytes it did not write while the daemon lived`);
    const events = new Map<string, PageEvent[]>();
    const releases = new Map<number, PageEvent[]>();
    const list = (vmid: number, pno: number): PageEvent[] => {
      const k = `${vmid}:${pno}`;
      if (!events.has(k)) events.set(k, []);
      return events.get(k)!;
    };
    for (const e of entries) {
      if (e.t === 'w') list(e.vmid, e.pno).push({ version: e.v, acked: false });
      else if (e.t === 'd') {
        const ev = list(e.vmid, e.pno).find((x) => x.version === e.v);
        if (ev) ev.acked = true;
      } else if (e.t === 'r') {
        const evs: PageEvent[] = [];
        for (let p = e.first; p < e.first + e.count; p++) {
          const ev = { version: 0, acked: false };
          list(e.vmid, p).push(ev);
          evs.push(ev);
        }
        releases.set(e.id, evs);
      } else if (e.t === 'rd') for (const ev of releases.get(e.id) ?? []) ev.acked = true;
    }
    const segments: number[] = entries.filter((e) => e.t === 'seg').map((e) => e.vmid);
    for (const vmid of segments) {
      for (let pno = 0; pno < pages; pno++) {
        const evs = events.get(`${vmid}:${pno}`) ?? [];
        const last = evs.map((e) => e.acked).lastIndexOf(true);
        const allowed = last < 0 ? [0, ...evs.map((e) => e.version)] : evs.slice(last).map((e) => e.version);
        const buf = new Uint8Array(PAGE);
        try {
          await client.vmMove(vmid, pno * PAGE, PAGE, UIO_READ, { iov: [buf], offset: 0, resid: PAGE, segflg: 0 });
        } catch (err) {
          violations.push(`segment ${vmid} page ${pno}: ${(err as Error).message}`);
          continue;
        }
        checked++;
        const ok = allowed.some((v) => Buffer.from(buf).equals(v === 0 ? new Uint8Array(PAGE) : versionPage(v)));
        if (!ok) {
          const zero = buf.every((b) => b === 0);
          const kind = zero ? 'zeros (an acknowledged write was lost)' : last >= 0 && evs[last].version === 0 ? 'non-zero after an acknowledged release' : 'torn, mixed or stale bytes';
          violations.push(`segment ${vmid} page ${pno}: ${kind}; allowed versions ${allowed.join(',')}`);
        }
      }
    }
  }
  return { checked, acked, violations };
}

/**
 * A client process of the crash loop: it writes, forces page-outs (vm_write / vm_writep + vms_iowait),
 * releases and reads pages of its own segments, logging every intent before it acts and every
 * acknowledgement after, to its history file. It exits when the daemon goes away.
 *
 *   node crash-worker.js SOCKET HISTORY_FILE WORKER CYCLE
 *
 * History lines (JSON): {t:'seg',vmid} {t:'w',vmid,pno,v} {t:'d',vmid,pno,v} {t:'r',vmid,first,count,id} {t:'rd',id}
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { UIO_READ, UIO_WRITE, V_WORKING, connect } from '../../src/client/index.js';
import { versionPage } from './page-pattern.js';
import { mulberry32 } from './random.js';

const PAGE = 4096;
export const WORKER_PAGES = 16;

const [socket, historyFile, workerArg, cycleArg] = process.argv.slice(2);
const worker = Number(workerArg);
const cycle = Number(cycleArg);
const random = mulberry32(cycle * 7919 + worker * 104729);
const log = (entry: object): void => appendFileSync(historyFile, `${JSON.stringify(entry)}\n`);
const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)];

async function main(): Promise<void> {
  const history = existsSync(historyFile) ? readFileSync(historyFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
  const c = await connect({ socket });
  let segments: number[] = history.filter((e) => e.t === 'seg').map((e) => e.vmid);
  if (segments.length === 0) {
    for (let i = 0; i < 2; i++) {
      const vmid = await c.vmsCreate(V_WORKING, WORKER_PAGES * PAGE);
      log({ t: 'seg', vmid });
    }
    segments = readFileSync(historyFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.t === 'seg').map((e) => e.vmid);
  }
  const vaddrs = new Map<number, number>();
  for (const vmid of segments) vaddrs.set(vmid, await c.vmAtt(vmid, 0));
  /** What this session wrote and has not yet seen acknowledged as durable, per segment. */
  const pending = new Map<number, Map<number, number>>(segments.map((v) => [v, new Map()]));
  /** This session's view of each page, to check reads while the daemon lives. */
  const latest = new Map<string, number>();
  let counter = 0;
  let releaseId = cycle * 1_000_000 + worker * 100_000;
  for (;;) {
    const vmid = pick(segments);
    const r = random();
    if (r < 0.55) {
      const pno = Math.floor(random() * WORKER_PAGES);
      const v = cycle * 1_000_000 + worker * 100_000 + ++counter;
      log({ t: 'w', vmid, pno, v });
      const data = versionPage(v);
      await c.vmMove(vmid, pno * PAGE, PAGE, UIO_WRITE, { iov: [data], offset: 0, resid: PAGE, segflg: 0 });
      pending.get(vmid)!.set(pno, v);
      latest.set(`${vmid}:${pno}`, v);
    } else if (r < 0.75) {
      const snapshot = [...pending.get(vmid)!.entries()];
      if (random() < 0.5) await c.vmWrite(vaddrs.get(vmid)!, WORKER_PAGES * PAGE, 1);
      else await c.vmWritep(vmid, 0, WORKER_PAGES);
      await c.vmsIowait(vmid);
      for (const [pno, v] of snapshot) {
        log({ t: 'd', vmid, pno, v });
        if (pending.get(vmid)!.get(pno) === v) pending.get(vmid)!.delete(pno);
      }
    } else if (r < 0.85) {
      const first = Math.floor(random() * WORKER_PAGES);
      const count = 1 + Math.floor(random() * Math.min(4, WORKER_PAGES - first));
      const id = ++releaseId;
      log({ t: 'r', vmid, first, count, id });
      // Half the time, start page-outs of the range first and release while they are in flight.
      if (random() < 0.5) await c.vmWrite(vaddrs.get(vmid)! + first * PAGE, count * PAGE, 1);
      await c.vmReleasep(vmid, first, count);
      log({ t: 'rd', id });
      for (let p = first; p < first + count; p++) {
        pending.get(vmid)!.delete(p);
        latest.set(`${vmid}:${p}`, 0);
      }
    } else {
      const pno = Math.floor(random() * WORKER_PAGES);
      const expected = latest.get(`${vmid}:${pno}`);
      const buf = new Uint8Array(PAGE);
      await c.vmMove(vmid, pno * PAGE, PAGE, UIO_READ, { iov: [buf], offset: 0, resid: PAGE, segflg: 0 });
      if (expected !== undefined) {
        const want = expected === 0 ? new Uint8Array(PAGE) : versionPage(expected);
        if (!Buffer.from(buf).equals(want)) {
          log({ t: 'bad', vmid, pno, expected });
          process.exit(2);
        }
      }
    }
  }
}

main().catch(() => process.exit(0)); // the daemon was killed: this session is over

import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { V_WORKING } from '../../src/constants.js';
import { PersistentStore, StoreRefusedError } from '../../src/store/persistent-store.js';
import { mulberry32 } from './random.js';
import { storeOptions } from './store-files.js';

const PAGE = 4096;
const PAGES = 96;
const SLOTS = 2 * PAGES + 64;

/** How one corrupted store fared. */
export type Outcome = 'refused' | 'detected' | 'no effect' | 'wrong' | 'destroyed later' | 'crashed';

/** A page's bytes for a version: its number and version in front, a fill byte after. */
function pageBytes(pno: number, version: number): Uint8Array {
  const bytes = new Uint8Array(PAGE).fill((pno * 7 + version) & 0xff);
  new DataView(bytes.buffer).setUint32(0, pno);
  new DataView(bytes.buffer).setUint32(4, version);
  return bytes;
}

/**
 * A reference store, cleanly closed: one segment of PAGES pages written over several page-out
 * cycles (three versions), a few released. Answers its directory and what each page must read.
 */
export async function referenceStore(dir: string): Promise<{ vmid: number; expected: Uint8Array[] }> {
  mkdirSync(dir, { recursive: true });
  const store = await PersistentStore.open(storeOptions(dir, { createBytes: (SLOTS + 1) * PAGE }));
  const vmid = await store.createSegment({ type: V_WORKING, options: 0, extent: PAGES * PAGE, uid: 1, gid: 1, mode: 0o600 });
  const expected: Uint8Array[] = Array.from({ length: PAGES }, () => new Uint8Array(PAGE));
  for (let version = 1; version <= 3; version++) {
    const pages = Array.from({ length: PAGES }, (_, p) => p).filter((p) => (p + version) % 3 !== 0 || version === 1);
    if (!store.reserveSlots(pages.length)) throw new Error('reference store too small');
    await store.writePages(pages.map((pno) => ({ vmid, pno, data: pageBytes(pno, version) }))).complete;
    for (const p of pages) expected[p] = pageBytes(p, version);
  }
  store.releasePages(vmid, 10, 4);
  for (let p = 10; p < 14; p++) expected[p] = new Uint8Array(PAGE);
  await store.close();
  return { vmid, expected };
}

/** One corruption of a stopped store's files, chosen by `random`. Answers what it did. */
function corrupt(dir: string, random: () => number): string {
  const file = random() < 0.6 ? 'meta.sqlite' : 'backing';
  const path = join(dir, file);
  const bytes = readFileSync(path);
  // The device: mostly its used part (header page and written slots), where a change can matter.
  const span = file === 'backing' ? Math.min(bytes.length, (2 * PAGES + 8) * PAGE) : bytes.length;
  const at = Math.floor(random() * span);
  if (random() < 0.7) {
    const bit = Math.floor(random() * 8);
    bytes[at] ^= 1 << bit;
    writeFileSync(path, bytes);
    return `${file}: bit ${bit} of byte ${at} flipped`;
  }
  const length = 1 + Math.floor(random() * 16);
  for (let i = 0; i < length && at + i < bytes.length; i++) bytes[at + i] = Math.floor(random() * 256);
  writeFileSync(path, bytes);
  return `${file}: ${length} bytes at ${at} overwritten`;
}

/**
 * Opens the corrupted store and classifies it: refused at open or by the page-map check;
 * 'wrong' if any page answers bytes other than its acknowledged ones; 'detected' if some pages
 * answer EIO (and the rest right); else, after page-outs of new versions of half the pages,
 * 'destroyed later' if an acknowledged page no longer reads right, or 'no effect'. 'crashed' for
 * anything thrown that is not a documented refusal or EIO.
 */
async function classify(dir: string, vmid: number, expected: Uint8Array[]): Promise<{ outcome: Outcome; why?: string }> {
  let store: PersistentStore;
  try {
    store = await PersistentStore.open(storeOptions(dir, { createBytes: (SLOTS + 1) * PAGE }));
  } catch (err) {
    return err instanceof StoreRefusedError ? { outcome: 'refused' } : { outcome: 'crashed', why: String((err as Error)?.stack ?? err) };
  }
  try {
    const refused = await store.pageMapChecked.then(() => false, () => true);
    if (refused) return { outcome: 'refused' };
    const readAll = async (): Promise<{ wrong: number; eio: number; other?: string }> => {
      let wrong = 0;
      let eio = 0;
      for (let p = 0; p < PAGES; p++) {
        const into = new Uint8Array(PAGE);
        try {
          await store.readPage(vmid, p, into);
        } catch (err) {
          if ((err as { code?: string }).code === 'EIO') eio++;
          else return { wrong, eio, other: String((err as Error)?.stack ?? err) };
          continue;
        }
        if (!Buffer.from(into).equals(Buffer.from(expected[p]))) wrong++;
      }
      return { wrong, eio };
    };
    const first = await readAll();
    if (first.other !== undefined) return { outcome: 'crashed', why: first.other };
    if (first.wrong > 0) return { outcome: 'wrong', why: `${first.wrong} pages` };
    if (first.eio > 0) return { outcome: 'detected' };
    // Page-outs of new versions of the even pages: none may land on an acknowledged page's slot.
    const even = Array.from({ length: PAGES / 2 }, (_, i) => 2 * i);
    if (store.reserveSlots(even.length)) {
      const outcome = await store.writePages(even.map((pno) => ({ vmid, pno, data: pageBytes(pno, 9) }))).complete.then(() => 'ok', (err: unknown) => String(err));
      if (outcome === 'ok') for (const p of even) expected[p] = pageBytes(p, 9);
    }
    const second = await readAll();
    if (second.other !== undefined) return { outcome: 'crashed', why: second.other };
    if (second.wrong > 0 || second.eio > 0) return { outcome: 'destroyed later', why: `${second.wrong} wrong, ${second.eio} EIO` };
    return { outcome: 'no effect' };
  } finally {
    await store.abort();
  }
}

/** Runs `count` seeded corruptions of copies of one reference store; answers the outcome table and the bad cases. */
export async function corruptionCampaign(work: string, seed: number, count: number): Promise<{ table: Record<Outcome, number>; bad: string[] }> {
  const reference = join(work, 'reference');
  const { vmid, expected } = await referenceStore(reference);
  const table: Record<Outcome, number> = { refused: 0, detected: 0, 'no effect': 0, wrong: 0, 'destroyed later': 0, crashed: 0 };
  const bad: string[] = [];
  const random = mulberry32(seed);
  for (let i = 0; i < count; i++) {
    const dir = join(work, `case-${i}`);
    mkdirSync(dir);
    for (const file of ['meta.sqlite', 'backing']) copyFileSync(join(reference, file), join(dir, file));
    const what = corrupt(dir, random);
    const { outcome, why } = await classify(dir, vmid, expected.map((e) => Uint8Array.from(e)));
    table[outcome]++;
    if (outcome === 'wrong' || outcome === 'destroyed later' || outcome === 'crashed') bad.push(`case ${i} (${what}): ${outcome}${why ? `: ${why}` : ''}`);
    rmSync(dir, { recursive: true, force: true });
  }
  if (statSync(reference).isDirectory()) rmSync(reference, { recursive: true, force: true });
  return { table, bad };
}

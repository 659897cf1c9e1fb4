import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
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

/** A stopped store's files, and what each page of its segment must read. */
interface Reference {
  dir: string;
  files: string[];
  expected: Uint8Array[];
}

/** The reference states corruptions start from. */
interface References {
  vmid: number;
  /** Cleanly closed: three versions over several page-out cycles, a few pages released. */
  clean: Reference;
  /** `clean` reopened and a fourth version of some pages acknowledged, then the files copied as they were: a kill -9. */
  crashed: Reference;
  /** The database of `clean` after its first version only: an older copy an operator might restore. */
  olderDatabase: string;
}

/** Writes versions `from`..`to` of the segment's pages (a few skipped each time), a page-out cycle each. */
async function writeVersions(store: PersistentStore, vmid: number, expected: Uint8Array[], from: number, to: number): Promise<void> {
  for (let version = from; version <= to; version++) {
    const pages = Array.from({ length: PAGES }, (_, p) => p).filter((p) => (p + version) % 3 !== 0 || version === 1);
    if (!store.reserveSlots(pages.length)) throw new Error('reference store too small');
    await store.writePages(pages.map((pno) => ({ vmid, pno, data: pageBytes(pno, version) }))).complete;
    for (const p of pages) expected[p] = pageBytes(p, version);
  }
}

function copyFiles(from: string, to: string, files: readonly string[]): void {
  mkdirSync(to, { recursive: true });
  for (const file of files) copyFileSync(join(from, file), join(to, file));
}

/** Builds the reference states under `work`. */
export async function referenceStores(work: string): Promise<References> {
  const dir = join(work, 'clean');
  mkdirSync(dir, { recursive: true });
  const open = () => PersistentStore.open(storeOptions(dir, { createBytes: (SLOTS + 1) * PAGE }));
  let store = await open();
  const vmid = await store.createSegment({ type: V_WORKING, options: 0, extent: PAGES * PAGE, uid: 1, gid: 1, mode: 0o600 });
  const expected: Uint8Array[] = Array.from({ length: PAGES }, () => new Uint8Array(PAGE));
  await writeVersions(store, vmid, expected, 1, 1);
  await store.close();
  const olderDatabase = join(work, 'older.sqlite');
  copyFileSync(join(dir, DATABASE), olderDatabase);
  store = await open();
  await store.pageMapChecked;
  await writeVersions(store, vmid, expected, 2, 3);
  store.releasePages(vmid, 10, 4);
  for (let p = 10; p < 14; p++) expected[p] = new Uint8Array(PAGE);
  await store.close();
  const clean: Reference = { dir, files: [DATABASE, DEVICE], expected: expected.map((e) => Uint8Array.from(e)) };

  const crashedDir = join(work, 'crashed');
  copyFiles(dir, crashedDir, clean.files);
  store = await PersistentStore.open(storeOptions(crashedDir, { createBytes: (SLOTS + 1) * PAGE }));
  await store.pageMapChecked;
  await writeVersions(store, vmid, expected, 4, 4);
  // Past the moment the last acknowledged cycle is in doubt (the store settles it 10 ms after its
  // flush when no cycle follows): see PersistentStore.settleSoon.
  await new Promise((resolve) => setTimeout(resolve, 50));
  // Copied while open and idle: what a kill -9 now leaves (the WAL holds the commits since the last checkpoint).
  const snapshot = join(work, 'crashed-files');
  copyFiles(crashedDir, snapshot, [DATABASE, WAL, DEVICE]);
  await store.abort();
  rmSync(crashedDir, { recursive: true, force: true });
  return { vmid, clean, crashed: { dir: snapshot, files: [DATABASE, WAL, DEVICE], expected }, olderDatabase };
}

const DATABASE = 'meta.sqlite';
const WAL = 'meta.sqlite-wal';
const DEVICE = 'backing';

/** Flips a bit, or overwrites 1-16 bytes, at a random place in a file (of the device, mostly its used part). */
function damageFile(path: string, random: () => number, span?: number): string {
  const bytes = readFileSync(path);
  const at = Math.floor(random() * Math.min(bytes.length, span ?? bytes.length));
  if (random() < 0.7) {
    const bit = Math.floor(random() * 8);
    bytes[at] ^= 1 << bit;
    writeFileSync(path, bytes);
    return `bit ${bit} of byte ${at} flipped`;
  }
  const length = 1 + Math.floor(random() * 16);
  for (let i = 0; i < length && at + i < bytes.length; i++) bytes[at + i] = Math.floor(random() * 256);
  writeFileSync(path, bytes);
  return `${length} bytes at ${at} overwritten`;
}

/** Moves one page-map row to another key (another run, or another segment), as a flipped key bit would. */
function moveRow(dir: string, random: () => number): string {
  const db = new Database(join(dir, DATABASE));
  try {
    const rows = db.prepare('SELECT vmid, run FROM page_map').all() as { vmid: number; run: number }[];
    const { vmid, run } = rows[Math.floor(random() * rows.length)];
    const toVmid = random() < 0.8 ? vmid : vmid ^ (1 << Math.floor(random() * 4));
    const toRun = toVmid !== vmid ? run : run ^ (1 << Math.floor(random() * 3));
    const taken = db.prepare('SELECT count(*) FROM page_map WHERE vmid = ? AND run = ?').pluck().get(toVmid, toRun) as number;
    db.prepare(`UPDATE ${taken > 0 ? 'OR REPLACE ' : ''}page_map SET vmid = ?, run = ? WHERE vmid = ? AND run = ?`).run(toVmid, toRun, vmid, run);
    return `page-map row (${vmid}, ${run}) moved to (${toVmid}, ${toRun})${taken > 0 ? ', over the row there' : ''}`;
  } finally {
    db.close();
  }
}

/**
 * One corruption, chosen by `random`, of a copy of one of the reference states in `dir`: bit flips
 * and byte overwrites of the database, its WAL or the device, a page-map row moved, the WAL
 * deleted after a kill -9, or an older database restored. Answers what it did and what each page
 * must read (the state's acknowledged bytes).
 */
function corrupt(references: References, dir: string, random: () => number): { what: string; expected: Uint8Array[] } {
  const kind = random();
  const base = kind < 0.5 || (kind >= 0.8 && kind < 0.85) ? references.clean : references.crashed;
  copyFiles(base.dir, dir, base.files);
  const state = base === references.clean ? 'clean' : 'crashed';
  let what: string;
  if (kind < 0.35 || (kind >= 0.5 && kind < 0.6)) what = `${DATABASE}: ${damageFile(join(dir, DATABASE), random)}`;
  else if (kind < 0.5 || (kind >= 0.6 && kind < 0.7)) what = `${DEVICE}: ${damageFile(join(dir, DEVICE), random, (2 * PAGES + 8) * PAGE)}`;
  else if (kind < 0.75) what = `${WAL}: ${damageFile(join(dir, WAL), random)}`;
  else if (kind < 0.85) what = moveRow(dir, random);
  else if (kind < 0.93) {
    rmSync(join(dir, WAL));
    what = `${WAL} deleted`;
  } else {
    copyFileSync(references.olderDatabase, join(dir, DATABASE));
    rmSync(join(dir, WAL), { force: true });
    what = 'an older copy of the database restored';
  }
  return { what: `${state}: ${what}`, expected: base.expected.map((e) => Uint8Array.from(e)) };
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

/** Runs `count` seeded corruptions of copies of the reference states; answers the outcome table and the bad cases. */
export async function corruptionCampaign(work: string, seed: number, count: number): Promise<{ table: Record<Outcome, number>; bad: string[] }> {
  const references = await referenceStores(work);
  const table: Record<Outcome, number> = { refused: 0, detected: 0, 'no effect': 0, wrong: 0, 'destroyed later': 0, crashed: 0 };
  const bad: string[] = [];
  const random = mulberry32(seed);
  for (let i = 0; i < count; i++) {
    const dir = join(work, `case-${i}`);
    const { what, expected } = corrupt(references, dir, random);
    const { outcome, why } = await classify(dir, references.vmid, expected);
    table[outcome]++;
    if (outcome === 'wrong' || outcome === 'destroyed later' || outcome === 'crashed') bad.push(`case ${i} (${what}): ${outcome}${why ? `: ${why}` : ''}`);
    rmSync(dir, { recursive: true, force: true });
  }
  rmSync(work, { recursive: true, force: true });
  return { table, bad };
}

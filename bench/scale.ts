import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '../src/native/addon.js';
import Database from 'better-sqlite3';
import { V_LARGE, V_WORKING, connect } from '../src/client/index.js';
import { PageSeal } from '../src/meta/page-seal.js';
import { PagesTable } from '../src/meta/pages-table.js';
import { PersistentStore } from '../src/store/persistent-store.js';

const PAGE = 4096;
const PAGERD = join(import.meta.dirname, '../src/cli/pagerd.js');

/**
 * Builds a store with `pages` mapped pages the fast way: format it, create one segment, then
 * insert the page map straight into SQLite in one transaction (slots point at zero pages, which
 * the sparse file holds, sealed with the zero page's checksum). Answers the state directory.
 */
export async function buildStore(pages: number): Promise<{ dir: string; dbBytes: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'pagerd-scale-'));
  const store = await PersistentStore.open({
    devicePath: join(dir, 'backing'),
    databasePath: join(dir, 'pagerd.sqlite'),
    pageSize: PAGE,
    createBytes: (pages + 1024) * PAGE,
    preallocate: false,
    spareSlots: 0,
    maxBatchPages: 4096,
    format: false,
  });
  const vmid = await store.createSegment({ type: V_WORKING, options: V_LARGE, extent: Math.max(1, pages) * PAGE, uid: 0, gid: 0, mode: 0o600 });
  const seal = new PageSeal(store.header.storeId);
  await store.close();
  const db = new Database(join(dir, 'pagerd.sqlite'));
  const zero = crc32c(new Uint8Array(PAGE));
  const map = new PagesTable(db, seal);
  db.transaction(() => {
    for (let p = 0; p < pages; p += 65536) {
      map.putMany(Array.from({ length: Math.min(65536, pages - p) }, (_, i) => ({ vmid, pno: p + i, slot: p + i, checksum: seal.of(zero, vmid, p + i) })));
    }
    db.prepare("UPDATE meta SET value = ? WHERE key = 'slot_high'").run(String(pages));
    db.prepare('UPDATE segments SET mapped = ? WHERE vmid = ?').run(pages, vmid);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { dir, dbBytes: statSync(join(dir, 'pagerd.sqlite')).size };
}

/** Starts the daemon on a built store: ms from spawn to the first answered request, and its RSS then. */
export async function startUp(dir: string, memory: string): Promise<{ ms: number; rssBytes: number }> {
  const socket = join(dir, 'pagerd.sock');
  const started = process.hrtime.bigint();
  const proc = spawn(process.execPath, [PAGERD, '--state-dir', dir, '--socket', socket, '--memory', memory, '--log-level', 'warn'], { stdio: 'ignore' });
  try {
    for (;;) {
      try {
        const c = await connect({ socket });
        await c.stats();
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        await c.close();
        const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))![1]) * 1024;
        return { ms, rssBytes: rss };
      } catch {
        if (proc.exitCode !== null) throw new Error('pagerd exited during start-up');
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
  }
}

export function removeStore(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

import type { Database, Statement } from 'better-sqlite3';
import { StatementLog } from './statement-log.js';

/** Facts about the store kept beside its metadata: store id, page size, slot high water, clean shutdown. */
export class MetaTable {
  readonly #get: Statement<[string], { value: string }>;
  readonly #set: Statement<[string, string]>;

  constructor(
    db: Database,
    private readonly writes = new StatementLog(),
  ) {
    this.#get = db.prepare('SELECT value FROM meta WHERE key = ?');
    this.#set = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  }

  get(key: string): string | undefined {
    return this.#get.get(key)?.value;
  }

  set(key: string, value: string | number): void {
    this.writes.run(this.#set, key, String(value));
  }
}

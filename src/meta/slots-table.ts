import type { Database, Statement } from 'better-sqlite3';

/** The free-slot table's statements: slots below the high water that no page references. */
export class SlotsTable {
  readonly #all: Statement<[], { slot: number }>;
  readonly #add: Statement<[number]>;
  readonly #take: Statement<[number]>;

  constructor(db: Database) {
    this.#all = db.prepare('SELECT slot FROM free_slots ORDER BY slot');
    this.#add = db.prepare('INSERT OR IGNORE INTO free_slots (slot) VALUES (?)');
    this.#take = db.prepare('DELETE FROM free_slots WHERE slot = ?');
  }

  all(): number[] {
    return this.#all.all().map((r) => r.slot);
  }

  add(slot: number): void {
    this.#add.run(slot);
  }

  take(slot: number): void {
    this.#take.run(slot);
  }
}

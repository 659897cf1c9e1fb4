import type { Statement } from 'better-sqlite3';

/**
 * The writes of a recorded transaction, encoded for a message to another thread: structured
 * cloning a list of [sql, params] costs ~1 µs a write (a 1,000-page cycle writes ~900 rows), a
 * typed array and one buffer of bytes, handed over, cost nearly nothing. `values` holds, per
 * write, the statement's index in `sql`, its parameter count, then per parameter a kind and a
 * value: a number; an index in `strings`; or a byte length, its bytes next in `bytes`.
 */
export interface LoggedWrites {
  sql: string[];
  strings: string[];
  values: Float64Array;
  bytes: Uint8Array;
}

const NUMBER = 0;
const STRING = 1;
const BYTES = 2;

/** Decodes recorded writes: calls `run` with each write's SQL and parameters, in order. */
export function eachWrite({ sql, strings, values, bytes }: LoggedWrites, run: (sql: string, params: unknown[]) => void): void {
  let at = 0;
  let byteAt = 0;
  while (at < values.length) {
    const statement = sql[values[at++]];
    const params: unknown[] = new Array(values[at++]);
    for (let i = 0; i < params.length; i++) {
      const kind = values[at++];
      const value = values[at++];
      if (kind === NUMBER) params[i] = value;
      else if (kind === STRING) params[i] = strings[value];
      else {
        params[i] = Buffer.from(bytes.buffer, bytes.byteOffset + byteAt, value);
        byteAt += value;
      }
    }
    run(statement, params);
  }
}

/** A transaction's writes as they are recorded. */
class Recording {
  private readonly sql: string[] = [];
  private readonly sqlIndex = new Map<string, number>();
  private readonly strings: string[] = [];
  private readonly values: number[] = [];
  private readonly chunks: Uint8Array[] = [];
  private byteLength = 0;

  add(sql: string, params: readonly unknown[]): void {
    let index = this.sqlIndex.get(sql);
    if (index === undefined) this.sqlIndex.set(sql, (index = this.sql.push(sql) - 1));
    this.values.push(index, params.length);
    for (const param of params) {
      if (typeof param === 'number') this.values.push(NUMBER, param);
      else if (typeof param === 'string') this.values.push(STRING, this.strings.push(param) - 1);
      else if (param instanceof Uint8Array) {
        this.values.push(BYTES, param.length);
        this.chunks.push(param);
        this.byteLength += param.length;
      } else throw new TypeError(`a recorded write cannot carry ${typeof param} parameters`);
    }
  }

  /** The writes, in buffers of their own (to be handed over, not copied). */
  done(): LoggedWrites {
    const bytes = new Uint8Array(this.byteLength);
    let at = 0;
    for (const chunk of this.chunks) {
      bytes.set(chunk, at);
      at += chunk.length;
    }
    return { sql: this.sql, strings: this.strings, values: Float64Array.from(this.values), bytes };
  }
}

/**
 * Runs the metadata tables' writes on their connection, or, while a transaction is being recorded,
 * logs them for the metadata writer's thread to run instead (metadata-writer.ts). Reads always run
 * at once: a recorded transaction reads what its writes are computed from on this connection.
 */
export class StatementLog {
  private current: Recording | undefined;

  /** True while a transaction is being recorded (its writes are not in SQLite yet). */
  get recording(): boolean {
    return this.current !== undefined;
  }

  run<P extends unknown[]>(statement: Statement<P>, ...params: P): void {
    if (this.current !== undefined) this.current.add(statement.source, params);
    else statement.run(...params);
  }

  /** Runs `work`, logging the writes it makes instead of running them; answers them, in order. */
  record(work: () => void): LoggedWrites {
    const recording = new Recording();
    this.current = recording;
    try {
      work();
    } finally {
      this.current = undefined;
    }
    return recording.done();
  }
}

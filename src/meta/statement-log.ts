import type { Statement } from 'better-sqlite3';

/** One write of a transaction: its SQL text and parameters, to be run by another connection. */
export type LoggedWrite = [sql: string, params: unknown[]];

/**
 * Runs the metadata tables' writes on their connection, or, while a transaction is being recorded,
 * logs them for the metadata writer's thread to run instead (metadata-writer.ts). Reads always run
 * at once: a recorded transaction reads what its writes are computed from on this connection.
 */
export class StatementLog {
  private log: LoggedWrite[] | undefined;

  run(statement: Statement<never[]>, ...params: unknown[]): void {
    if (this.log !== undefined) this.log.push([statement.source, params]);
    else (statement as unknown as Statement<unknown[]>).run(...params);
  }

  /** Runs `work`, logging the writes it makes instead of running them; answers them in order. */
  record(work: () => void): LoggedWrite[] {
    const log: LoggedWrite[] = [];
    this.log = log;
    try {
      work();
    } finally {
      this.log = undefined;
    }
    return log;
  }
}

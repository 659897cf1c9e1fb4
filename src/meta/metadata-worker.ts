import { workerData, type MessagePort } from 'node:worker_threads';
import type { Database, Statement, Transaction } from 'better-sqlite3';
import { openConnection } from './database.js';
import type { WriterAnswer, WriterData, WriterRequest } from './metadata-writer.js';
import { eachWrite, type LoggedWrites } from './statement-log.js';
import { WalSpace } from './wal-space.js';

/**
 * The metadata writer's thread (metadata-writer.ts): runs each transaction it is sent on its own
 * connection, in order, and answers it. NORMAL: its commits write WAL frames without a sync; the
 * store syncs the WAL in the thread pool (wal-sync.ts) before anything depends on them.
 */
const { port, answered } = workerData as WriterData;
process.on('exit', () => {
  Atomics.store(answered, 1, 1);
  Atomics.notify(answered, 0);
});

/** One store's connection, opened at its first transaction (a store closed before it has none). */
class Connection {
  readonly db: Database;
  private readonly space: WalSpace;
  private readonly statements = new Map<string, Statement<unknown[]>>();
  private readonly transaction: Transaction<(writes: LoggedWrites) => void>;

  constructor(databasePath: string) {
    this.db = openConnection(databasePath, 'NORMAL');
    this.space = new WalSpace(this.db, databasePath);
    this.transaction = this.db.transaction((writes: LoggedWrites) => eachWrite(writes, (sql, params) => this.prepared(sql).run(...params)));
  }

  /** Runs the writes in one immediate transaction, once more after a checkpoint if the WAL's file system was full. */
  commit(writes: LoggedWrites): void {
    this.space.commit(() => this.transaction.immediate(writes));
  }

  private prepared(sql: string): Statement<unknown[]> {
    let statement = this.statements.get(sql);
    if (statement === undefined) this.statements.set(sql, (statement = this.db.prepare(sql)));
    return statement;
  }
}

const connections = new Map<string, Connection>();

function serve({ databasePath, writes, close }: WriterRequest): void {
  if (close === true) {
    connections.get(databasePath)?.db.close();
    connections.delete(databasePath);
    return;
  }
  let connection = connections.get(databasePath);
  if (connection === undefined) connections.set(databasePath, (connection = new Connection(databasePath)));
  if (writes !== undefined) connection.commit(writes);
}

(port as MessagePort).on('message', (request: WriterRequest) => {
  let answer: WriterAnswer;
  try {
    serve(request);
    answer = { id: request.id };
  } catch (err) {
    const { code, message } = err as { code?: string; message?: string };
    answer = { id: request.id, error: { code, message: message ?? String(err) } };
  }
  port.postMessage(answer);
  Atomics.add(answered, 0, 1);
  Atomics.notify(answered, 0);
});

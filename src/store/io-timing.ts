/** The store operations whose latency is reported (metrics: pagerd_device_io_seconds). */
export type IoOp = 'read' | 'writev' | 'datasync' | 'commit';

export type IoObserver = (op: IoOp, seconds: number) => void;

/** Runs `work` and reports its duration in seconds to `observe`, if there is one. */
export async function timed<T>(op: IoOp, observe: IoObserver | undefined, work: () => Promise<T> | T): Promise<T> {
  if (observe === undefined) return work();
  const start = process.hrtime.bigint();
  try {
    return await work();
  } finally {
    observe(op, Number(process.hrtime.bigint() - start) / 1e9);
  }
}

import { PagerError } from '../errors.js';

/**
 * Sleeping until something changes, without spinning: waiters park on a key and are woken by
 * wake(key). A woken waiter re-checks its condition (wake-ups may be spurious).
 */
export class WaitQueue<K> {
  private readonly sleepers = new Map<K, Set<() => void>>();

  /**
   * Resolves on the next wake(key); with a timeout, resolves false if none came in time. Rejects
   * with EINTR (interrupted) if `signal` aborts first.
   */
  wait(key: K, timeoutMs?: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      let set = this.sleepers.get(key);
      if (set === undefined) {
        set = new Set();
        this.sleepers.set(key, set);
      }
      const sleepers = set;
      let timer: NodeJS.Timeout | undefined;
      const finish = (): void => {
        sleepers.delete(wake);
        if (sleepers.size === 0 && this.sleepers.get(key) === sleepers) this.sleepers.delete(key);
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const wake = (): void => {
        finish();
        resolve(true);
      };
      const onAbort = (): void => {
        finish();
        reject(new PagerError('interrupted'));
      };
      if (signal?.aborted) return onAbort();
      sleepers.add(wake);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          finish();
          resolve(false);
        }, Math.max(0, timeoutMs));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Wakes every waiter on `key`. */
  wake(key: K): void {
    const set = this.sleepers.get(key);
    if (set === undefined) return;
    for (const wake of [...set]) wake();
  }
}

import { sdNotify } from '../native/addon.js';

/**
 * Talks to systemd through $NOTIFY_SOCKET (Type=notify): READY, STATUS, STOPPING, WATCHDOG. Every
 * send is guarded: a notify socket that went away must never take the daemon down.
 */
export class SystemdNotifier {
  private readonly socket: string | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    env: NodeJS.ProcessEnv,
    private readonly onError: (err: unknown) => void,
  ) {
    this.socket = env.NOTIFY_SOCKET || undefined;
  }

  notify(state: string): void {
    if (this.socket === undefined) return;
    try {
      sdNotify(this.socket, state);
    } catch (err) {
      this.onError(err);
    }
  }

  /**
   * Pings the watchdog at half of WATCHDOG_USEC (or of fallbackMs), if either is set, while
   * `healthy(timeoutMs)` says so. A timer that fires shows the event loop turns; `healthy` adds
   * what a turning loop does not show (the page writer stuck on a device). Unhealthy, the pings
   * stop and systemd restarts the daemon when the timeout passes.
   */
  startWatchdog(env: NodeJS.ProcessEnv, fallbackMs: number, healthy: (timeoutMs: number) => boolean): void {
    const usec = Number(env.WATCHDOG_USEC);
    const ms = Number.isFinite(usec) && usec > 0 ? usec / 1000 : fallbackMs;
    if (ms <= 0 || this.socket === undefined) return;
    this.watchdog = setInterval(() => {
      if (healthy(ms)) this.notify('WATCHDOG=1');
      else this.onError(new Error('not pinging the watchdog: the page writer has made no progress within its timeout'));
    }, ms / 2);
    this.watchdog.unref();
  }

  stopWatchdog(): void {
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
  }
}

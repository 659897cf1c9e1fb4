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

  /** Pings the watchdog at half of WATCHDOG_USEC (or of fallbackMs), if either is set. */
  startWatchdog(env: NodeJS.ProcessEnv, fallbackMs: number): void {
    const usec = Number(env.WATCHDOG_USEC);
    const ms = Number.isFinite(usec) && usec > 0 ? usec / 1000 : fallbackMs;
    if (ms <= 0 || this.socket === undefined) return;
    this.watchdog = setInterval(() => this.notify('WATCHDOG=1'), ms / 2);
    this.watchdog.unref();
  }

  stopWatchdog(): void {
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
  }
}

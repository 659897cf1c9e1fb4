import { closeFd, peerPidfd, processExited } from '../native/addon.js';

/**
 * The process that connected a socket's peer end, followed by a pidfd: whether it has exited,
 * whatever its pid names later. Held by whoever still needs to ask (the connection, and the
 * paging devices while frames it may read are held for it); the pidfd closes with the last.
 */
export class PeerProcess {
  private holders = 1;
  private gone = false;

  private constructor(private readonly pidfd: number) {}

  /** The peer process of connected Unix socket `fd`, held once (by the caller). Throws a system error if it cannot be followed. */
  static of(fd: number): PeerProcess {
    return new PeerProcess(peerPidfd(fd));
  }

  /** True once the process has exited (its threads, and the mappings they read, are gone). */
  exited(): boolean {
    this.gone ||= processExited(this.pidfd);
    return this.gone;
  }

  hold(): void {
    this.holders++;
  }

  letGo(): void {
    if (--this.holders === 0) closeFd(this.pidfd);
  }
}

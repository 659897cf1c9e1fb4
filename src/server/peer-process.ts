import { closeFd, peerPidfd, processExited } from '../native/addon.js';

/**
 * A process at the peer end of connections, followed by a pidfd: whether it has exited, whatever
 * its pid names later. Held by whoever still needs to ask (its connections, and the paging devices
 * while frames it may read are held for it); the pidfd closes with the last.
 */
export class PeerProcess {
  private holders = 1;
  private gone = false;

  constructor(
    private readonly pidfd: number,
    private readonly closed: () => void,
  ) {}

  /** True once the process has exited (its threads, and the mappings they read, are gone). */
  exited(): boolean {
    this.gone ||= processExited(this.pidfd);
    return this.gone;
  }

  hold(): void {
    this.holders++;
  }

  letGo(): void {
    if (--this.holders > 0) return;
    closeFd(this.pidfd);
    this.closed();
  }
}

/** The peer processes followed now, one per live process however many connections it has. */
export class PeerProcesses {
  private readonly byPid = new Map<number, PeerProcess>();

  /**
   * The process of pid `pid` that connected socket `fd`, held once more (the caller lets go). A
   * pid known and not exited is that process still; otherwise it is followed anew from the socket
   * (SO_PEERPIDFD), as is one the kernel reports no pid of (0: in another pid namespace). Throws
   * a system error if it cannot be followed.
   */
  of(pid: number, fd: number): PeerProcess {
    // Pid 0: a process of another pid namespace, not known by pid here.
    if (pid <= 0) return new PeerProcess(peerPidfd(fd), () => undefined);
    const known = this.byPid.get(pid);
    if (known !== undefined && !known.exited()) {
      known.hold();
      return known;
    }
    const process: PeerProcess = new PeerProcess(peerPidfd(fd), () => {
      if (this.byPid.get(pid) === process) this.byPid.delete(pid);
    });
    this.byPid.set(pid, process);
    return process;
  }
}

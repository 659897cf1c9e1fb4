import type { PagerError } from '../errors.js';
import { setMaxListeners } from 'node:events';
import { AddressSpace } from './address-space.js';
import type { Segment } from './segment.js';

/** Who is calling, as the kernel reported it (SO_PEERCRED), never as a request claimed. */
export interface Credentials {
  uid: number;
  gid: number;
  pid: number;
}

/**
 * The context a client call runs in: the caller's credentials and its address space. One per
 * client connection; its attachments end with it, and so does every wait it is in.
 */
export class ClientContext {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  readonly space = new AddressSpace();
  /**
   * Page-out failures this client has not heard yet: one entry per segment, holding what failed
   * first (SPEC §4: an error is reported once to each connection). Set by the engine when a
   * page-out fails, taken by this client's next vms_iowait on the segment.
   */
  readonly unheardFailures = new Map<number, PagerError>();
  private readonly ended = new AbortController();

  constructor(cred: Credentials) {
    this.uid = cred.uid;
    this.gid = cred.gid;
    this.pid = cred.pid;
    // Every wait of the connection listens on it: no leak warning at a handful of listeners.
    setMaxListeners(0, this.ended.signal);
  }

  /** Aborts when the client is gone (its connection closed): every wait it is in ends. */
  get gone(): AbortSignal {
    return this.ended.signal;
  }

  /** The client is gone: ends its waits. */
  end(): void {
    this.ended.abort();
  }

  /** Permission bits (r=4, w=2) the segment's mode grants this caller; root gets all. */
  private rights(seg: Segment): number {
    if (this.uid === 0) return 0o7;
    if (this.uid === seg.uid) return (seg.mode >> 6) & 0o7;
    if (this.gid === seg.gid) return (seg.mode >> 3) & 0o7;
    return seg.mode & 0o7;
  }

  /** Whether the caller may act on the whole store (verify, backup): root or the daemon's own uid. */
  get mayUseWholeStore(): boolean {
    return this.uid === 0 || this.uid === process.getuid?.();
  }

  /** A segment the caller has no right on at all answers exactly like one that does not exist. */
  maySee(seg: Segment): boolean {
    return (this.rights(seg) & 0o6) !== 0;
  }

  mayRead(seg: Segment): boolean {
    return (this.rights(seg) & 0o4) !== 0;
  }

  mayWrite(seg: Segment): boolean {
    return (this.rights(seg) & 0o2) !== 0;
  }
}

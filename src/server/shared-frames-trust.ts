import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/load-config.js';

/**
 * Who may map the shared frame pool. The mapping shows every resident page of every segment,
 * whatever its mode, so it is offered only to peers that may read everything anyway: the daemon's
 * own uid, root, and members (primary or supplementary) of server.sharedFramesGroup, as the
 * kernel recorded them when the peer connected.
 */
export class SharedFramesTrust {
  private readonly gid: number | undefined;

  /** `group`: a group name or numeric gid ('' for none); an unknown name throws a ConfigError. */
  constructor(group: string) {
    this.gid = group === '' ? undefined : resolveGroup(group);
  }

  /**
   * Whether the peer is trusted. `groups` answers its supplementary groups as they were when it
   * connected (SO_PEERGROUPS: not looked up by pid, which another process may have by now); it is
   * asked only when a group is configured and the primary gid is not it.
   */
  trusts(peer: { uid: number; gid: number }, groups: () => number[]): boolean {
    if (peer.uid === 0 || peer.uid === process.getuid?.()) return true;
    if (this.gid === undefined) return false;
    return peer.gid === this.gid || groups().includes(this.gid);
  }
}

function resolveGroup(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && /^\d+$/.test(gid ?? '')) return Number(gid);
  }
  throw new ConfigError(`server.sharedFramesGroup: no group named ${JSON.stringify(group)} in /etc/group`);
}

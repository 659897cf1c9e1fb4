import { readFileSync } from 'node:fs';
import { configError } from '../config/load-config.js';
import type { Config } from '../config/tunables.js';

/**
 * Who may map the shared frame pool. The mapping shows every resident page of every segment,
 * whatever its mode, so it is offered only to peers that may read everything anyway: the daemon's
 * own uid, root, and members (primary or supplementary) of server.sharedFramesGroup, as the
 * kernel recorded them when the peer connected.
 */
export class SharedFramesTrust {
  private readonly gid: number | undefined;

  /** Reads server.sharedFramesGroup (a group name or numeric gid, '' for none); an unknown name throws a ConfigError. */
  constructor(config: Config) {
    const group = config['server.sharedFramesGroup'];
    const gid = group === '' ? undefined : resolveGroup(group);
    if (gid === null) throw configError(config, 'server.sharedFramesGroup', `no group named ${JSON.stringify(group)} in /etc/group`);
    this.gid = gid;
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

function resolveGroup(group: string): number | null {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && /^\d+$/.test(gid ?? '')) return Number(gid);
  }
  return null;
}

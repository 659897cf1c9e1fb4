import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/load-config.js';

/**
 * Who may map the shared frame pool. The mapping shows every resident page of every segment,
 * whatever its mode, so it is offered only to peers that may read everything anyway: the daemon's
 * own uid, root, and members (primary or supplementary) of server.sharedFramesGroup.
 */
export class SharedFramesTrust {
  private readonly gid: number | undefined;

  /** `group`: a group name or numeric gid ('' for none); an unknown name throws a ConfigError. */
  constructor(group: string) {
    this.gid = group === '' ? undefined : resolveGroup(group);
  }

  trusts(peer: { uid: number; gid: number; pid: number }): boolean {
    if (peer.uid === 0 || peer.uid === process.getuid?.()) return true;
    if (this.gid === undefined) return false;
    return peer.gid === this.gid || supplementaryGroups(peer.pid).includes(this.gid);
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

/** The peer's supplementary groups (from /proc; none if it is gone or unreadable). */
function supplementaryGroups(pid: number): number[] {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Groups:\s*(.*)$/m);
    return line === null ? [] : line[1].trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

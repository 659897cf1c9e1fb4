import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UIO_READ, UIO_WRITE, V_CLIENT, V_WORKING } from '../../src/client/index.js';
import { startDaemon } from '../support/daemon.js';
import { isRoot } from '../support/loop-device.js';
import { publicCopy } from '../support/public-copy.js';
import { storeDir } from '../support/store-files.js';

// Run as other uids: from a copy they can read wherever the checkout lives.
const PUBLIC = isRoot ? publicCopy(['@commander-js/extra-typings', 'commander', 'zod', 'cli-progress']) : '';
const CLIENT = join(PUBLIC, 'dist/test/support/isolation-client.js');
const PAGERCTL = join(PUBLIC, 'dist/src/cli/pagerctl.js');

function runAs(uid: number, gid: number, args: string[]): Record<string, unknown> {
  const out = execFileSync('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', process.execPath, CLIENT, ...args], { encoding: 'utf8' });
  return JSON.parse(out);
}

describe('isolation between uids', () => {
  it.runIf(isRoot)("another uid can neither bind to, unmount nor rebind onto a uid's paging device, nor rebind its client segment, nor see it listed", async () => {
    const stateDir = storeDir('pagerd-iso-dev-');
    chmodSync(stateDir, 0o755);
    const socket = join(stateDir, 'run', 'pagerd.sock');
    const daemon = await startDaemon({ stateDir, socket });
    try {
      const owner = await daemon.client();
      const device = await owner.vmMounte(() => undefined);
      const vmid = await owner.vmsCreate(V_CLIENT, 4096, { device, mode: 0o666 }); // visible to the stranger, not theirs
      const out = execFileSync('setpriv', ['--reuid=2000', '--regid=0', '--clear-groups', process.execPath, join(PUBLIC, 'dist/test/support/strategy-stranger.js'), socket, String(device), String(vmid)], { encoding: 'utf8' });
      expect(JSON.parse(out)).toEqual({
        createOnTheirs: { code: 'EINVAL', reason: 'no-such-device' },
        unmountTheirs: { code: 'EINVAL', reason: 'no-such-device' },
        rebindMineOntoTheirs: { code: 'EINVAL', reason: 'no-such-device' },
        rebindTheirsOntoMine: { code: 'EACCES', reason: 'no-write-access' },
        devicesListedOfUids: [2000], // its own only
      });
      expect(await owner.devices()).toEqual(expect.arrayContaining([expect.objectContaining({ id: device, uid: 0, segments: [vmid] })]));
      await owner.close();
    } finally {
      await daemon.stop();
    }
  });

  it.runIf(isRoot)('another uid cannot see, attach, read or write a 0600 segment, and is answered as for a nonexistent one; a uid outside the group cannot connect', async () => {
    const stateDir = storeDir('pagerd-iso-');
    chmodSync(stateDir, 0o755); // the socket's own directory is 0750: the group test is there
    const socket = join(stateDir, 'run', 'pagerd.sock');
    const daemon = await startDaemon({ stateDir, socket });
    try {
      const owner = await daemon.client();
      const vmid = await owner.vmsCreate(V_WORKING, 4096, 0, 0o600);
      const secret = new Uint8Array(16).fill(0x5a);
      await owner.vmMove(vmid, 0, 16, UIO_WRITE, { iov: [secret], offset: 0, resid: 16, segflg: 0 });

      // uid 2000 in the socket's group (gid 0) may connect, but the segment is its owner's alone.
      const stranger = runAs(2000, 0, [socket, String(vmid), '4294967']);
      expect(stranger.connect).toBe('ok');
      expect(stranger.hidden).toEqual(stranger.missing);
      for (const answer of Object.values(stranger.hidden as Record<string, unknown>)) {
        expect(answer).toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
      }
      expect(stranger.segments).toEqual([]);
      // Shared frames show every segment: not offered to another uid, and refused if it asks.
      expect(stranger.frames).toEqual({ offered: false, asked: 'EACCES shared-frames-not-offered', hiddenRead: 0 });

      // A uid outside the socket's group cannot even connect; pagerctl says so with exit status 77.
      expect(runAs(2001, 2001, [socket, String(vmid), '1'])).toEqual({ connect: 'EACCES' });
      const ctl = spawnSync('setpriv', ['--reuid=2001', '--regid=2001', '--clear-groups', process.execPath, PAGERCTL, '--socket', socket, 'status']);
      expect(ctl.status).toBe(77);

      // The owner's segment is untouched.
      const back = new Uint8Array(16);
      await owner.vmMove(vmid, 0, 16, UIO_READ, { iov: [back], offset: 0, resid: 16, segflg: 0 });
      expect(back).toEqual(secret);
      await owner.close();
    } finally {
      await daemon.stop();
    }
  });

  it.runIf(isRoot)('a member of server.sharedFramesGroup maps the shared frames, and still reads no page of a segment the daemon does not let it read', async () => {
    const stateDir = storeDir('pagerd-iso-');
    chmodSync(stateDir, 0o755);
    const socket = join(stateDir, 'run', 'pagerd.sock');
    const daemon = await startDaemon({ stateDir, socket, env: { PAGERD_SERVER_SHARED_FRAMES_GROUP: '2500' } });
    try {
      const owner = await daemon.client();
      const vmid = await owner.vmsCreate(V_WORKING, 4096, 0, 0o600);
      await owner.vmMove(vmid, 0, 16, UIO_WRITE, { iov: [new Uint8Array(16).fill(0x5a)], offset: 0, resid: 16, segflg: 0 });
      const member = JSON.parse(execFileSync('setpriv', ['--reuid=2002', '--regid=0', '--groups=2500', process.execPath, CLIENT, socket, String(vmid), '4294967'], { encoding: 'utf8' })) as Record<string, unknown>;
      expect(member.frames).toEqual({ offered: true, asked: 'mapped', hiddenRead: 0 });
      expect((member.hidden as Record<string, unknown>).read).toMatchObject({ code: 'EINVAL', reason: 'no-such-segment' });
      await owner.close();
    } finally {
      await daemon.stop();
    }
  });
});

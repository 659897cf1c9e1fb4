import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connect, V_WORKING } from '../../src/client/index.js';
import { PAGERD } from '../support/daemon.js';
import { storeDir } from '../support/store-files.js';

const UNITS = join(import.meta.dirname, '../../systemd');

describe('systemd units', () => {
  it('pagerd.service rates 1.0 or lower with systemd-analyze security --offline', () => {
    const out = execFileSync('systemd-analyze', ['security', '--offline=true', join(UNITS, 'pagerd.service')], { encoding: 'utf8' });
    const score = Number(/Overall exposure level for pagerd\.service: ([\d.]+)/.exec(out)?.[1]);
    expect(score).toBeLessThanOrEqual(1.0);
  });

  it('pagerd.service is Type=notify, keeps devices closed but the backing device, and does not restart on exit 78', () => {
    const unit = readFileSync(join(UNITS, 'pagerd.service'), 'utf8');
    for (const line of ['Type=notify', 'RestartPreventExitStatus=64 65 66 73 77 78', 'DevicePolicy=closed', 'RuntimeDirectoryPreserve=yes', 'WatchdogSec=']) expect(unit).toContain(line);
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
    expect(unit).not.toMatch(/^PrivateDevices=yes/m);
    expect(readFileSync(join(UNITS, 'sysusers.d/pagerd.conf'), 'utf8')).toMatch(/^u pagerd /m);
  });

  it('serves on the socket systemd hands over (systemd-socket-activate) and tells systemd READY and STOPPING', async () => {
    const dir = storeDir('pagerd-activate-');
    const socket = join(dir, 'activated.sock');
    const notify = join(dir, 'notify.sock');
    // A datagram listener standing in for systemd's notify socket (Node 20 has no Unix datagrams).
    const listener = spawn('python3', ['-u', '-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    print(s.recv(4096).decode().replace("\\n", " "), flush=True)
`, notify]);
    let notes = '';
    listener.stdout.on('data', (d: Buffer) => (notes += d.toString()));
    await waitFor(() => notes.includes('bound'));
    const daemon = spawn('systemd-socket-activate', ['-l', socket, '-E', `NOTIFY_SOCKET=${notify}`, '-E', 'PAGERD_STORE_CREATE_BYTES=16MiB', process.execPath, PAGERD, '--state-dir', dir, '--memory', '1MiB', '--log-level', 'warn'], { stdio: 'ignore' });
    try {
      // systemd-socket-activate starts the daemon at the first connection, as systemd would.
      await waitFor(() => existsSync(socket));
      const c = await connect({ socket });
      await waitFor(() => notes.includes('READY=1'));
      expect(await c.vmsCreate(V_WORKING, 4096)).toBeGreaterThan(0);
      await c.close();
      daemon.kill('SIGTERM');
      await waitFor(() => notes.includes('STOPPING=1'));
    } finally {
      daemon.kill('SIGKILL');
      listener.kill();
    }
  });
});

async function waitFor(condition: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

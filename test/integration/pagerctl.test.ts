import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';
import { storeDir } from '../support/store-files.js';

const PAGERCTL = join(import.meta.dirname, '../../dist/src/cli/pagerctl.js');
let daemon: RunningDaemon;

function pagerctl(args: string[], input?: Buffer): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [PAGERCTL, '--socket', daemon.socket, ...args], { input, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

beforeAll(async () => {
  daemon = await startDaemon();
});
afterAll(async () => {
  await daemon.stop();
});

describe('pagerctl', () => {
  it('creates, lists, writes, reads, pages out, releases and verifies', () => {
    const created = pagerctl(['--json', 'segments', 'create', 'client', '64KiB', '--mode', '640']);
    expect(created.status).toBe(0);
    const { vmid } = JSON.parse(created.stdout.toString());
    const list = JSON.parse(pagerctl(['--json', 'segments']).stdout.toString());
    expect(list).toEqual([expect.objectContaining({ vmid, type: 2, extent: 65536, mode: 0o640 })]);
    const payload = Buffer.from('hello, pager\n'.repeat(500));
    expect(pagerctl(['write', String(vmid), '100'], payload).status).toBe(0);
    expect(pagerctl(['pageout', String(vmid), '0', '16', '--wait']).status).toBe(0);
    expect(pagerctl(['read', String(vmid), '100', String(payload.length)]).stdout.equals(payload)).toBe(true);
    expect(pagerctl(['release', String(vmid), '0', '1']).status).toBe(0);
    expect(pagerctl(['read', String(vmid), '0', '4096']).stdout.every((b) => b === 0)).toBe(true);
    const verify = pagerctl(['--json', 'verify']);
    expect(verify.status).toBe(0);
    expect(JSON.parse(verify.stdout.toString())).toMatchObject({ ok: true });
    expect(pagerctl(['status']).stderr).toMatch(/pagerd is up: page size 4096/);
    expect(pagerctl(['metrics']).stdout.toString()).toMatch(/pagerd_page_outs_total/);
  });

  it('--json: every command prints one JSON document on stdout', () => {
    const json = (args: string[], input?: Buffer): unknown => {
      const r = pagerctl(['--json', ...args], input);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return JSON.parse(r.stdout.toString());
    };
    const { vmid } = json(['segments', 'create', 'working', '16KiB']) as { vmid: number };
    expect(json(['write', String(vmid), '0'], Buffer.from('four'))).toEqual({ vmid, offset: 0, moved: 4 });
    expect(json(['read', String(vmid), '0', '4'])).toEqual({ vmid, offset: 0, moved: 4, base64: Buffer.from('four').toString('base64') });
    expect(json(['pageout', String(vmid), '0', '4', '--wait'])).toEqual({ vmid, pfirst: 0, npages: 4, waited: true });
    expect(json(['iowait', String(vmid)])).toEqual({ vmid });
    expect(json(['release', String(vmid), '0', '1'])).toEqual({ vmid, pfirst: 0, npages: 1 });
    expect(json(['status'])).toMatchObject({ up: true });
    expect(json(['stats'])).toMatchObject({ pageSize: 4096 });
    expect(json(['segments'])).toEqual(expect.arrayContaining([expect.objectContaining({ vmid })]));
    expect(json(['segments', 'list'])).toEqual(expect.arrayContaining([expect.objectContaining({ vmid })]));
    expect(json(['verify'])).toMatchObject({ ok: true });
    const families = json(['metrics']) as { name: string; type: string; samples: unknown[] }[];
    expect(families.find((f) => f.name === 'pagerd_page_outs_total')).toMatchObject({ type: 'counter', samples: [expect.objectContaining({ value: expect.any(Number) })] });
    expect(json(['backup', join(storeDir('pagerd-ctl-backup-'), 'b')])).toMatchObject({ deviceBytes: expect.any(Number) });
    expect(json(['segments', 'delete', String(vmid)])).toEqual({ deleted: vmid });
  });

  it('exits 1 with the errno name and reason on a service error', () => {
    const r = pagerctl(['--json', 'iowait', '987654']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stderr)).toEqual({ error: { code: 'EINVAL', errno: 22, reason: 'no-such-segment', message: expect.any(String) } });
    expect(pagerctl(['iowait', '987654']).stderr).toMatch(/^pagerctl: EINVAL \(no-such-segment\): /);
  });

  it('read streams a range of many moves; a range past the end fails EFAULT before any byte is out, whatever length was asked', () => {
    const extent = 3 * 1024 * 1024 + 5 * 4096; // not a whole number of moves
    const { vmid } = JSON.parse(pagerctl(['--json', 'segments', 'create', 'working', String(extent)]).stdout.toString()) as { vmid: number };
    const payload = Buffer.alloc(extent);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 131 + 17) & 0xff;
    expect(pagerctl(['write', String(vmid), '0'], payload).status).toBe(0);
    expect(pagerctl(['read', String(vmid), '0', String(extent)]).stdout.equals(payload)).toBe(true);
    expect(pagerctl(['read', String(vmid), '1', String(extent - 1)]).stdout.equals(payload.subarray(1))).toBe(true);
    // Lengths past the end, up to more than any memory holds: refused whole, as one move is.
    for (const [offset, length] of [[0, extent + 1], [4096, extent], [0, 99999999999], [extent + 1, 0]]) {
      const past = pagerctl(['read', String(vmid), String(offset), String(length)]);
      expect(past.status, `${offset} ${length}`).toBe(1);
      expect(past.stderr).toMatch(/^pagerctl: EFAULT \(beyond-extent\)/);
      expect(past.stdout.length).toBe(0);
    }
    const pastJson = pagerctl(['--json', 'read', String(vmid), '0', String(extent + 1)]);
    expect(pastJson.status).toBe(1);
    expect(JSON.parse(pastJson.stderr)).toMatchObject({ error: { code: 'EFAULT', reason: 'beyond-extent' } });
    expect(pagerctl(['--json', 'read', String(vmid), '0', String(2 ** 53 - 1)]).status).toBe(64); // past what one JSON string holds
    expect(pagerctl(['read', String(vmid), String(extent), '0']).status).toBe(0);
  });

  it('a stdout closed early (read | head) is one line and 74, not a stack trace; a backup where no directory can be made fails at once', async () => {
    const { vmid } = JSON.parse(pagerctl(['--json', 'segments', 'create', 'working', '8MiB']).stdout.toString()) as { vmid: number };
    const reader = spawn(process.execPath, [PAGERCTL, '--socket', daemon.socket, 'read', String(vmid), '0', String(8 * 1024 * 1024)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    reader.stderr.on('data', (d: Buffer) => (err += d.toString()));
    reader.stdout.once('data', () => reader.stdout.destroy()); // as head -c 10 does
    expect(await new Promise((resolve) => reader.once('close', resolve))).toBe(74); // 'close': its stderr read to the end
    expect(err).toMatch(/^pagerctl: cannot write to stdout: .*EPIPE\n$/);
    // Node's recursive mkdir retries for ever where /proc answers ENOENT under an existing parent.
    const r = spawnSync(process.execPath, [PAGERCTL, '--socket', daemon.socket, 'backup', '/proc/pagerd-backup'], { timeout: 10_000 });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(73);
    expect(r.stderr.toString()).toMatch(/^pagerctl: ENOENT: no such file or directory, mkdir '\/proc\/pagerd-backup'\n$/);
    // --json output that cannot be written is 74 too, not 0 with nothing said.
    const full = spawnSync('sh', ['-c', `"${process.execPath}" "${PAGERCTL}" --socket "${daemon.socket}" --json status > /dev/full`], { encoding: 'utf8' });
    expect(full.status).toBe(74);
    expect(full.stderr).toMatch(/"code":"EX_IOERR","reason":"output"/);
  });

  it('takes integers in decimal digits only', () => {
    const { vmid } = JSON.parse(pagerctl(['--json', 'segments', 'create', 'working', '16KiB']).stdout.toString()) as { vmid: number };
    expect(pagerctl(['read', String(vmid), '0', '16']).status).toBe(0);
    for (const bad of ['1e3', '0x10', '-1', '1.5', ' 16', '']) expect(pagerctl(['read', String(vmid), '0', bad]).status, bad).toBe(64);
    // Option bits may be written in hexadecimal; the daemon judges which bits exist.
    const created = pagerctl(['--json', 'segments', 'create', 'working', '16KiB', '--options', '0x400']);
    expect(created.status, created.stderr).toBe(0);
    expect(JSON.parse(pagerctl(['--json', 'segments']).stdout.toString())).toEqual(expect.arrayContaining([expect.objectContaining({ vmid: JSON.parse(created.stdout.toString()).vmid, options: 0x400 })]));
    expect(pagerctl(['segments', 'create', 'working', '16KiB', '--options', '0x100000000']).status).toBe(1); // EINVAL bad-option
    expect(pagerctl(['segments', 'create', 'working', '16KiB', '--options', '0xzz']).status).toBe(64);
  });

  it('exits 64 on bad usage and 69 when the daemon is unreachable', () => {
    expect(pagerctl(['read', 'x', '0', '1']).status).toBe(64);
    expect(pagerctl(['frobnicate']).status).toBe(64);
    const r = spawnSync(process.execPath, [PAGERCTL, '--socket', '/nonexistent/pagerd.sock', 'status']);
    expect(r.status).toBe(69);
  });
});

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePrometheusText } from '../../src/cli/prometheus-text.js';
import { connect, UIO_WRITE, V_WORKING } from '../../src/client/index.js';
import { PAGERD, startDaemon } from '../support/daemon.js';
import { storeDir } from '../support/store-files.js';

const ALERTS = join(import.meta.dirname, '../../docs/prometheus/pagerd-alerts.yml');

/** Every pagerd metric family an operator's dashboards and alerts rely on, with its type. */
const FAMILIES: Record<string, string> = {
  pagerd_build_info: 'gauge',
  pagerd_request_seconds: 'histogram',
  pagerd_device_io_seconds: 'histogram',
  pagerd_hits_total: 'counter',
  pagerd_misses_total: 'counter',
  pagerd_page_outs_total: 'counter',
  pagerd_page_out_failures_total: 'counter',
  pagerd_page_in_failures_total: 'counter',
  pagerd_checksum_failures_total: 'counter',
  pagerd_releases_total: 'counter',
  pagerd_steals_total: 'counter',
  pagerd_resident_pages: 'gauge',
  pagerd_free_frames: 'gauge',
  pagerd_dirty_pages: 'gauge',
  pagerd_io_level_lag: 'gauge',
  pagerd_mapped_slots: 'gauge',
  pagerd_available_slots: 'gauge',
  pagerd_connections: 'gauge',
  pagerd_nbd_connections: 'gauge',
  pagerd_connections_refused_total: 'counter',
  pagerd_store_failed: 'gauge',
  pagerd_page_writer_stalled: 'gauge',
  pagerd_page_outs_held: 'gauge',
  pagerd_event_loop_delay_p99_seconds: 'gauge',
  pagerd_event_loop_delay_max_seconds: 'gauge',
  pagerd_state_dir_free_bytes: 'gauge',
  process_cpu_seconds_total: 'counter',
  process_resident_memory_bytes: 'gauge',
  process_open_fds: 'gauge',
  nodejs_eventloop_lag_p99_seconds: 'gauge',
  nodejs_heap_size_used_bytes: 'gauge',
};

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

const have = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

async function waitFor<T>(probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await probe().catch(() => undefined);
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('metrics over HTTP (Prometheus)', () => {
  it('promtool and prometheus are installed (.ci/run installs them)', () => {
    expect(['promtool', 'prometheus'].filter((t) => !have(t))).toEqual([]);
  });

  it('--metrics-listen serves every metric family with its type, in a format promtool accepts; other paths 404, other methods 405', async () => {
    const port = await freePort();
    const daemon = await startDaemon({ args: ['--metrics-listen', `127.0.0.1:${port}`] });
    try {
      const c = await daemon.client();
      const vmid = await c.vmsCreate(V_WORKING, 4096);
      await c.vmMove(vmid, 0, 4096, UIO_WRITE, { iov: [new Uint8Array(4096).fill(1)], offset: 0, resid: 4096, segflg: 0 });
      await c.vmWritep(vmid, 0, 1); // a page-out: the device I/O histogram gets its first samples
      await c.vmsIowait(vmid);
      await c.close();
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      const families = new Map(parsePrometheusText(text).map((f) => [f.name, f]));
      for (const [name, type] of Object.entries(FAMILIES)) {
        expect(families.get(name)?.type, name).toBe(type);
        expect(families.get(name)?.samples.length, name).toBeGreaterThan(0);
      }
      expect(families.get('pagerd_build_info')!.samples[0].labels).toMatchObject({ version: expect.stringMatching(/^\d+\.\d+\.\d+/), node: process.version });
      expect(families.get('pagerd_request_seconds')!.samples.some((s) => s.labels.op === 'vmMove' && s.name === 'pagerd_request_seconds_count' && s.value >= 1)).toBe(true);
      if (have('promtool')) {
        const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
        // prom-client's own nodejs_active_*_total gauges break a naming rule; pagerd's families break none.
        const problems = `${lint.stdout}${lint.stderr}`.split('\n').filter((l) => l.trim() !== '' && !/^nodejs_/.test(l));
        expect(problems).toEqual([]);
      }
      expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).toBe(405);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'HEAD' })).status).toBe(200);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });

  it.runIf(have('prometheus') && have('promtool'))('a real Prometheus scrapes it, and the example alert rules load and evaluate', async () => {
    expect(spawnSync('promtool', ['check', 'rules', ALERTS], { encoding: 'utf8' }).status).toBe(0);
    const port = await freePort();
    const daemon = await startDaemon({ args: ['--metrics-listen', `127.0.0.1:${port}`] });
    const dir = storeDir('pagerd-prometheus-');
    const webPort = await freePort();
    const config = join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: ["${ALERTS}"]`,
        'scrape_configs:',
        '  - job_name: pagerd',
        `    static_configs: [{ targets: ["127.0.0.1:${port}"] }]`,
        '',
      ].join('\n'),
    );
    const prometheus = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${webPort}`], { stdio: 'ignore' });
    try {
      const query = async (q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[] | undefined> => {
        const body = (await (await fetch(`http://127.0.0.1:${webPort}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
        return body.data.result.length > 0 ? body.data.result : undefined;
      };
      const up = await waitFor(() => query('up{job="pagerd"}'), 60_000);
      expect(up[0].value[1]).toBe('1');
      const info = await waitFor(() => query('pagerd_build_info'));
      expect(info[0].metric).toMatchObject({ job: 'pagerd', node: process.version });
      // The rules are evaluated against pagerd's series: a healthy daemon fires none of them.
      const rules = await waitFor(async () => {
        const body = (await (await fetch(`http://127.0.0.1:${webPort}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; state: string }[] }[] } };
        const all = body.data.groups.flatMap((g) => g.rules);
        return all.length > 0 && all.every((r) => r.health === 'ok') ? all : undefined;
      });
      expect(rules.filter((r) => r.state !== 'inactive')).toEqual([]);
    } finally {
      prometheus.kill();
      expect(await daemon.stop()).toBe(0);
    }
  }, 120_000);

  it('under socket activation, serves /metrics on the socket named "metrics" (pagerd-metrics.socket) beside the client socket', async () => {
    const dir = storeDir('pagerd-metrics-activate-');
    const socket = join(dir, 'activated.sock');
    const port = await freePort();
    const daemon = spawn(
      'systemd-socket-activate',
      ['-l', socket, '-l', `127.0.0.1:${port}`, '--fdname=pagerd.socket:metrics', '-E', 'PAGERD_STORE_CREATE_BYTES=16MiB', process.execPath, PAGERD, '--state-dir', dir, '--memory', '1MiB', '--log-level', 'warn'],
      { stdio: 'ignore' },
    );
    try {
      await waitFor(async () => (existsSync(socket) ? true : undefined));
      // The first connection starts the daemon, as systemd would; it answers once it is serving.
      const text = await waitFor(async () => {
        const res = await fetch(`http://127.0.0.1:${port}/metrics`);
        return res.status === 200 ? res.text() : undefined;
      });
      expect(text).toMatch(/^pagerd_build_info\{/m);
      const c = await connect({ socket });
      expect(await c.vmsCreate(V_WORKING, 4096)).toBeGreaterThan(0);
      await c.close();
    } finally {
      daemon.kill('SIGTERM');
    }
  });
});

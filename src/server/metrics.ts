import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { IoOp } from '../store/io-timing.js';
import type { PersistentStore } from '../store/persistent-store.js';
import type { Vmm } from '../vm/vmm.js';
import { VERSION } from '../version.js';
import { type HistogramSeries, LatencyHistogram } from './latency-histogram.js';

/** What the daemon counts outside the engine and the store, read at scrape time. */
export interface DaemonGauges {
  connections: () => number;
  nbdConnections: () => number;
  refusedConnections: () => number;
  pageOutsHeld: () => boolean;
}

/** How long the page writer may go without finishing a cycle, with work pending, before it counts as stalled (s). */
const WRITER_STALL_SECONDS = 30;

/** How often the event loop's delay is sampled (ms). */
const DELAY_RESOLUTION_MS = 1;

/**
 * Prometheus metrics: engine counters and gauges read at scrape time, and request latency by
 * operation observed as requests finish.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests = new LatencyHistogram('pagerd_request_seconds', 'Request latency by operation', ['op', 'outcome'], [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5,
  ]);
  private readonly deviceIo = new LatencyHistogram('pagerd_device_io_seconds', 'Backing store latency: device read, writev, fdatasync, and metadata commit', ['op'], [
    0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1,
  ]);
  /** Each operation and outcome's series, looked up once (a join of its label values per request cost more than the count). */
  private readonly requestSeries = new Map<string, HistogramSeries<'op' | 'outcome'>>();

  constructor() {
    this.registry.registerMetric(this.requests.asMetric());
    this.registry.registerMetric(this.deviceIo.asMetric());
    // process_* and nodejs_* (CPU, memory, descriptors, GC, the event loop's lag).
    collectDefaultMetrics({ register: this.registry });
    new Gauge({ name: 'pagerd_build_info', help: 'Always 1: the version of pagerd and of Node.js running', labelNames: ['version', 'node'], registers: [this.registry] })
      .labels(VERSION, process.version)
      .set(1);
  }

  /** Registers the engine, store and daemon gauges and counters (read at scrape time). */
  watch(vmm: Vmm, store: PersistentStore, daemon: DaemonGauges): void {
    const r = this.registry;
    const counter = (name: string, help: string, read: () => number): void => {
      let last = 0;
      new Counter({
        name,
        help,
        registers: [r],
        collect() {
          const now = read();
          if (now > last) this.inc(now - last);
          last = now;
        },
      });
    };
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          this.set(read());
        },
      });
    };
    counter('pagerd_hits_total', 'Moves served from a resident page', () => vmm.counters.hits);
    counter('pagerd_misses_total', 'Faults on a non-resident page', () => vmm.counters.misses);
    counter('pagerd_page_ins_total', 'Page-ins started', () => vmm.counters.pageIns);
    counter('pagerd_page_outs_total', 'Page-outs started', () => vmm.counters.pageOuts);
    counter('pagerd_page_out_failures_total', 'Page-outs that failed', () => vmm.counters.pageOutFailures);
    counter('pagerd_releases_total', 'Pages released', () => vmm.counters.releases);
    counter('pagerd_steals_total', 'Clean frames taken by the clock hand', () => vmm.counters.steals);
    gauge('pagerd_resident_pages', 'Frames holding a page', () => vmm.pool.count - vmm.pool.freeCount);
    gauge('pagerd_free_frames', 'Frames on the free list', () => vmm.pool.freeCount);
    gauge('pagerd_dirty_pages', 'Frames holding modified bytes', () => vmm.modifiedFrameCount());
    gauge('pagerd_io_level_lag', 'Page-outs initiated and not yet complete, over all segments', () => {
      let lag = 0;
      for (const seg of vmm.segments.values()) lag += seg.io.lag;
      return lag;
    });
    gauge('pagerd_mapped_slots', 'Backing slots holding a committed page', () => store.slotStats.mapped);
    gauge('pagerd_available_slots', 'Backing slots that can still be reserved', () => store.slotStats.available);
    gauge('pagerd_connections', 'Client connections on the native socket', daemon.connections);
    gauge('pagerd_nbd_connections', 'Client connections on the NBD socket', daemon.nbdConnections);
    counter('pagerd_connections_refused_total', 'Connections refused at a cap (server.maxConnections, per uid, handshakes), native and NBD', daemon.refusedConnections);
    gauge('pagerd_store_failed', '1 once the backing store has failed permanently (page-outs answer EIO until it is reopened)', () => (store.failed ? 1 : 0));
    counter('pagerd_checksum_failures_total', 'Page-ins answered EIO because a slot or a page-map row failed its checksum (see docs/operations.md)', () => store.readErrors.checksum);
    counter('pagerd_page_in_failures_total', 'Page-ins answered EIO because the device failed the read', () => store.readErrors.device);
    gauge('pagerd_page_outs_held', '1 while a backup holds page-outs (pagerctl backup)', () => (daemon.pageOutsHeld() ? 1 : 0));
    gauge('pagerd_page_writer_stalled', `1 while page-outs are pending and none has completed for ${WRITER_STALL_SECONDS} s (the watchdog's test)`, () =>
      store.pageOutsProgressing(WRITER_STALL_SECONDS * 1000) ? 0 : 1,
    );
    // The event loop's delay (how late a timer fires: what every request waits behind), since the
    // last scrape. The histogram records the time between a 1 ms timer's firings: the delay is what
    // exceeds the 1 ms.
    const delay = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS });
    delay.enable();
    const lateness = (ns: number): number => Math.max(0, ns / 1e9 - DELAY_RESOLUTION_MS / 1e3);
    let delayWindow = { p99: 0, max: 0 };
    gauge('pagerd_event_loop_delay_p99_seconds', "99th percentile of the event loop's delay since the last scrape", () => {
      delayWindow = { p99: lateness(delay.percentile(99)), max: lateness(delay.max) };
      delay.reset();
      return delayWindow.p99;
    });
    gauge('pagerd_event_loop_delay_max_seconds', "Largest event loop delay in the same window as the p99 (read with it)", () => delayWindow.max);
    gauge('pagerd_state_dir_free_bytes', 'Free bytes in the file system of the metadata database', () => {
      const free = store.metadataFreeBytes;
      return Number.isFinite(free) ? free : -1;
    });
  }

  observeDeviceIo(op: IoOp, seconds: number): void {
    this.deviceIo.observe([op], seconds);
  }

  observeRequest(op: string, seconds: number, ok: boolean): void {
    const key = ok ? op : `${op}!`;
    let series = this.requestSeries.get(key);
    if (series === undefined) {
      series = this.requests.series([op, ok ? 'ok' : 'error']);
      this.requestSeries.set(key, series);
    }
    series.observe(seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

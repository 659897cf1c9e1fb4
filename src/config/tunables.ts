import { z } from 'zod';

/**
 * Every tunable of pagerd, declared once: its key, unit, default and a one-line description.
 * config/pagerd.default.json and config/pagerd.schema.json are generated from this list
 * (npm run config:generate), and a test fails when they disagree with it.
 */

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/** A byte count: a number, or a string such as "256MiB". */
const size = z.union([z.number().int().nonnegative(), z.string().regex(/^\d+\s*(B|KiB|MiB|GiB|TiB)?$/, 'a size such as 4096, "64KiB" or "1GiB"')]);

/** The smallest server.maxPayloadBytes: a 64 KiB page (the largest page size) and its frame head. */
const MIN_PAYLOAD_BYTES = 64 * 1024 + 4096;
/** The smallest server.maxQueuedBytes. */
const MIN_QUEUED_BYTES = 64 * 1024;

export function parseSize(value: number | string): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+)\s*(B|KiB|MiB|GiB|TiB)?$/.exec(value.trim());
  if (m === null) throw new Error(`not a size: ${value}`);
  return Number(m[1]) * SIZE_UNITS[m[2] ?? ''];
}

/** A size of at least one 4 KiB page, in whole pages (the smallest page size a store has). */
function isPageMultiple(value: number | string): boolean {
  try {
    const bytes = parseSize(value);
    return bytes >= 4096 && bytes % 4096 === 0;
  } catch {
    return false; // not a size: the size schema says so
  }
}

interface Tunable {
  unit: string;
  default: string | number | boolean;
  description: string;
  schema: z.ZodType;
}

export const TUNABLES = {
  socket: { unit: 'path', default: './var/pagerd.sock', description: 'Unix socket clients connect to', schema: z.string().min(1) },
  nbdSocket: {
    unit: 'path',
    default: '',
    description: 'Unix socket serving segments as NBD exports (named by vmid), with socketMode and the same caps; empty: off (npm start serves ./var/nbd.sock)',
    schema: z.string(),
  },
  stateDir: { unit: 'path', default: './var', description: 'directory of the SQLite database and the default backing file', schema: z.string().min(1) },
  device: { unit: 'path', default: '', description: 'backing file or block device; empty means <stateDir>/backing', schema: z.string() },
  format: { unit: 'boolean', default: false, description: 'format a device that holds something other than a pagerd store', schema: z.boolean() },
  logLevel: {
    unit: 'level',
    default: 'info',
    description: 'pino log level',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  },
  logFormat: {
    unit: 'format',
    default: 'auto',
    description: 'log lines as JSON (pino), or pretty for a person to read; auto: pretty when the log goes to a terminal',
    schema: z.enum(['auto', 'json', 'pretty']),
  },
  metricsListen: {
    unit: 'host:port',
    default: '',
    description: 'serve Prometheus metrics over HTTP at /metrics on this address, e.g. 127.0.0.1:9477; empty: off (under systemd, pagerd-metrics.socket hands over its socket instead)',
    schema: z.union([
      z.literal(''),
      z
        .string()
        .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'HOST:PORT, such as 127.0.0.1:9477 or [::1]:9477')
        .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'a port from 0 to 65535'),
    ]),
  },
  socketMode: { unit: 'octal string', default: '0660', description: 'permission bits of the socket', schema: z.string().regex(/^0?[0-7]{3}$/) },
  'memory.size': {
    unit: 'bytes',
    default: '256MiB',
    description: "size of the frame pool (a multiple of the store's page size)",
    schema: size.refine((v) => isPageMultiple(v), 'a positive multiple of 4096 bytes (one page), such as "256MiB"'),
  },
  'memory.minFree': { unit: 'frames', default: 64, description: 'pageout starts when fewer frames are free (AIX minfree)', schema: z.number().int().nonnegative() },
  'memory.maxFree': { unit: 'frames', default: 128, description: 'pageout stops once this many frames are free (AIX maxfree)', schema: z.number().int().positive() },
  'memory.maxPinnedShare': {
    unit: 'fraction of the frame pool',
    default: 0.5,
    description: 'most of the pool one uid may hold pinned (pages of large-page segments, charged to the owner); past it that uid gets ENOMEM',
    schema: z.number().gt(0).lte(1),
  },
  'memory.allocTimeoutMs': { unit: 'ms', default: 5000, description: 'how long a fault waits for a frame before ENOMEM', schema: z.number().int().nonnegative() },
  'writeback.minAgeMs': { unit: 'ms', default: 2000, description: 'vm_write without force skips pages paged out more recently than this', schema: z.number().int().nonnegative() },
  'pageout.batchPages': { unit: 'pages', default: 256, description: 'most pages the pageout daemon sends in one batch', schema: z.number().int().positive() },
  'store.pageSize': { unit: 'bytes', default: 4096, description: 'page size a new store is formatted with (4096 or 65536)', schema: z.union([z.literal(4096), z.literal(65536)]) },
  'store.createBytes': { unit: 'bytes', default: '1GiB', description: 'size of a backing file created on first start', schema: size },
  'store.preallocate': { unit: 'boolean', default: false, description: 'allocate a new backing file up front instead of sparse', schema: z.boolean() },
  'store.spareSlots': { unit: 'slots', default: 64, description: 'slots held back from reservations as copy-on-write room', schema: z.number().int().nonnegative() },
  'store.maxBatchPages': { unit: 'pages', default: 16384, description: 'most pages in one write cycle (one fdatasync, one commit)', schema: z.number().int().positive() },
  'server.maxConnections': { unit: 'connections', default: 1024, description: 'connections open at once; past it a new one is refused with EAGAIN', schema: z.number().int().positive() },
  'server.maxConnectionsPerUid': { unit: 'connections', default: 256, description: 'connections one uid may have open at once', schema: z.number().int().positive() },
  'server.maxHandshakesPerUid': { unit: 'connections', default: 64, description: 'connections one uid may have between connect and a finished handshake', schema: z.number().int().positive() },
  'server.handshakeTimeoutMs': { unit: 'ms', default: 5000, description: 'close a connection that has not finished its handshake this long after connecting', schema: z.number().int().positive() },
  'server.maxInFlight': { unit: 'requests', default: 64, description: 'requests one connection may have in flight before it is paused', schema: z.number().int().positive() },
  'server.maxQueuedBytes': {
    unit: 'bytes',
    default: '4MiB',
    description: 'reply bytes queued or promised (reads in flight) for one connection before it is paused (one serving a paging device is still read, its further requests held in a backlog of this plus server.maxPayloadBytes); at least 64KiB',
    // A socket says it has drained only once it held 16 KiB or more: a smaller cap could wait for ever.
    schema: size.refine((v) => parseSize(v) >= MIN_QUEUED_BYTES, 'at least 64KiB (a connection paused below what a socket holds would never be resumed)'),
  },
  'server.maxQueuedBytesTotal': {
    unit: 'bytes',
    default: '64MiB',
    description: 'reply bytes queued or promised over all connections before those holding some are paused',
    schema: size,
  },
  'server.stalledDropMs': { unit: 'ms', default: 10000, description: 'a connection paused this long for not reading its replies is dropped', schema: z.number().int().positive() },
  'server.maxPayloadBytes': {
    unit: 'bytes',
    default: '2MiB',
    description: 'largest frame accepted (moves are split by the client to fit); at least 68KiB',
    schema: size.refine((v) => parseSize(v) >= MIN_PAYLOAD_BYTES, 'at least 68KiB (a 64 KiB page and its frame head must fit in one frame)'),
  },
  'server.idleTimeoutMs': { unit: 'ms', default: 0, description: 'close a connection idle this long (0: never)', schema: z.number().int().nonnegative() },
  'server.partialFrameTimeoutMs': { unit: 'ms', default: 10000, description: 'close a connection that leaves a frame incomplete this long', schema: z.number().int().positive() },
  'server.sharedFrames': {
    unit: 'boolean',
    default: true,
    description: 'offer trusted local clients the frame pool to map read-only (resident reads without a round trip); trusted: the daemon uid, root, server.sharedFramesGroup',
    schema: z.boolean(),
  },
  'server.sharedFramesGroup': {
    unit: 'group name or gid',
    default: '',
    description: 'members of this group are trusted with shared frames too: they can read every resident page of every segment',
    schema: z.string(),
  },
  'strategy.maxInFlight': { unit: 'requests', default: 16, description: "strategy requests one paging device (a client file system) has unanswered at once; more wait in the device's queue", schema: z.number().int().positive() },
  'strategy.maxRequestPages': { unit: 'pages', default: 64, description: 'most contiguous pages one strategy write carries', schema: z.number().int().positive() },
  'strategy.maxModifiedShare': {
    unit: 'fraction of the frame pool',
    default: 0.25,
    description:
      "most of the pool one uid's client segments may hold in pages modified or being written out (only their file systems can give those frames back); past it that uid's writers wait for write-behind up to memory.allocTimeoutMs, then ENOMEM",
    schema: z.number().gt(0).lte(1),
  },
  'strategy.maxModifiedTotalShare': {
    unit: 'fraction of the frame pool',
    default: 0.5,
    description: "most of the pool all client segments together may hold in pages modified or being written out (the rest stays pagerd's own store's); past it their writers wait as past strategy.maxModifiedShare",
    schema: z.number().gt(0).lte(1),
  },
  'strategy.maxStrandedShare': {
    unit: 'fraction of the frame pool',
    default: 0.125,
    description: 'most of the pool client segments without a live paging device (their device gone) may hold in modified pages, past it new modifications of them answer ENOMEM; and most lent to file systems by frame reference at once (in writes they serve, and held for failed ones that did not answer), past it page-outs go as bytes',
    schema: z.number().gt(0).lte(1),
  },
  'strategy.timeoutMs': { unit: 'ms', default: 30000, description: 'a strategy request unanswered this long fails with EIO', schema: z.number().int().positive() },
  'server.watchdogMs': { unit: 'ms', default: 0, description: 'systemd watchdog interval when WATCHDOG_USEC is not set (0: off)', schema: z.number().int().nonnegative() },
} as const satisfies Record<string, Tunable>;

export type TunableKey = keyof typeof TUNABLES;
export type Config = { -readonly [K in TunableKey]: z.output<(typeof TUNABLES)[K]['schema']> };

/** Environment variable of a key: PAGERD_ + the key in upper snake case (memory.size -> PAGERD_MEMORY_SIZE). */
export function envName(key: TunableKey): string {
  return `PAGERD_${key.replace(/\./g, '_').replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

/** The config file's shape: keys nested at their dots ({"memory": {"size": "256MiB"}}). */
export function nest(flat: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(flat)) {
    const parts = key.split('.');
    let node = out;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]] = value;
  }
  return out;
}

export function flatten(nested: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(nested)) {
    const key = prefix + k;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) Object.assign(out, flatten(v as Record<string, unknown>, `${key}.`));
    else out[key] = v;
  }
  return out;
}

/** The schema of a config file, nested; every key optional (defaults fill the rest). */
export function fileSchema(): z.ZodType {
  const groups: Record<string, Record<string, z.ZodType>> = {};
  const top: Record<string, z.ZodType> = {};
  for (const [key, t] of Object.entries(TUNABLES) as [TunableKey, Tunable][]) {
    const described = t.schema.describe(`${t.description} (${t.unit}; default ${JSON.stringify(t.default)})`).optional();
    const [head, tail] = key.split('.');
    if (tail === undefined) top[head] = described;
    else (groups[head] ??= {})[tail] = described;
  }
  for (const [group, fields] of Object.entries(groups)) top[group] = z.strictObject(fields).optional();
  return z.strictObject(top);
}

export function defaults(): Config {
  return Object.fromEntries(Object.entries(TUNABLES).map(([k, t]) => [k, t.default])) as Config;
}

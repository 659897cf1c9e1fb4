#!/usr/bin/env node
/**
 * pagerctl: talk to a running pagerd. `--json` puts one JSON document on stdout; human text and
 * errors go to stderr. Exit status: 0 ok, 1 a service error (its errno name and reason printed),
 * 64 usage, 69 daemon unreachable, 77 permission, 78 bad config.
 */
import { Command, Option } from '@commander-js/extra-typings';
import { PagerError, UIO_READ, UIO_WRITE, V_CLIENT, V_PERSISTENT, V_WORKING, connect, type PagerClient } from '../client/index.js';
import { parseSize } from '../config/tunables.js';
import { progressBar } from './progress.js';

const EXIT = { OK: 0, SERVICE: 1, USAGE: 64, UNREACHABLE: 69, PERMISSION: 77, CONFIG: 78 } as const;
const TYPES: Record<string, number> = { working: V_WORKING, client: V_CLIENT, persistent: V_PERSISTENT };

const program = new Command()
  .name('pagerctl')
  .description('control and inspect a running pagerd')
  .option('--socket <path>', 'daemon socket (default $PAGERD_SOCKET, then ./var/pagerd.sock)')
  .option('--json', 'one JSON document on stdout')
  .showHelpAfterError();
program.exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE));

const int = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) {
    console.error(`pagerctl: ${name} must be an integer, not ${v}`);
    process.exit(EXIT.USAGE);
  }
  return n;
};

/** Prints a result: JSON on stdout with --json, else the human text on stderr. */
function emit(json: unknown, human: string): void {
  if (program.opts().json) process.stdout.write(`${JSON.stringify(json)}\n`);
  else process.stderr.write(`${human}\n`);
}

async function withClient<T>(work: (c: PagerClient) => Promise<T>): Promise<T> {
  let client: PagerClient;
  try {
    client = await connect({ socket: program.opts().socket });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    console.error(`pagerctl: cannot reach pagerd: ${(err as Error).message}`);
    process.exit(code === 'EACCES' || code === 'EPERM' ? EXIT.PERMISSION : EXIT.UNREACHABLE);
  }
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

program.command('status').description('is the daemon up, and how is it').action(() =>
  withClient(async (c) => {
    const s = (await c.stats()) as { pageSize: number; frames: number; segments: number; connections: number; dirty: number; storeFailed: boolean };
    emit({ up: true, ...s }, `pagerd is up: page size ${s.pageSize}, ${s.frames} frames (${s.dirty} dirty), ${s.segments} segments, ${s.connections} connections${s.storeFailed ? ', STORE FAILED' : ''}`);
  }),
);

program.command('stats').description('daemon statistics').action(() =>
  withClient(async (c) => {
    const s = await c.stats();
    emit(s, JSON.stringify(s, null, 2));
  }),
);

program.command('metrics').description('Prometheus text').action(() =>
  withClient(async (c) => {
    process.stdout.write(await c.metrics());
  }),
);

const segments = program.command('segments').description('list, create and delete segments');
segments.command('list', { isDefault: true }).action(() =>
  withClient(async (c) => {
    const list = await c.segments();
    emit(list, list.map((s) => `${s.vmid}\ttype ${s.type}\textent ${s.extent}\tmode ${s.mode.toString(8)}\tresident ${s.residentPages}`).join('\n') || '(no segments)');
  }),
);
segments
  .command('create')
  .argument('<type>', 'working, client or persistent')
  .argument('<size>', 'bytes, e.g. 64MiB')
  .option('--mode <octal>', 'permission bits', '600')
  .option('--options <bits>', 'V_LARGE, V_INTRSEG, V_LGPAGE bits', '0')
  .action((type, size, opts) =>
    withClient(async (c) => {
      if (!(type in TYPES)) {
        console.error(`pagerctl: type must be working, client or persistent`);
        process.exit(EXIT.USAGE);
      }
      const vmid = await c.vmsCreate(TYPES[type], parseSize(size), Number(opts.options), parseInt(opts.mode, 8));
      emit({ vmid }, `created segment ${vmid}`);
    }),
  );
segments
  .command('delete')
  .argument('<vmid>', 'segment', int('vmid'))
  .action((vmid) =>
    withClient(async (c) => {
      await c.vmsDelete(vmid);
      emit({ deleted: vmid }, `deleted segment ${vmid}`);
    }),
  );

program
  .command('read')
  .description('write bytes of a segment to stdout')
  .argument('<vmid>', 'segment', int('vmid'))
  .argument('<offset>', 'byte offset', int('offset'))
  .argument('<length>', 'bytes', int('length'))
  .action((vmid, offset, length) =>
    withClient(async (c) => {
      const buf = new Uint8Array(length);
      const moved = await c.vmMove(vmid, offset, length, UIO_READ, { iov: [buf], offset: 0, resid: length, segflg: 0 });
      process.stdout.write(buf.subarray(0, moved));
    }),
  );

program
  .command('write')
  .description('write stdin into a segment')
  .argument('<vmid>', 'segment', int('vmid'))
  .argument('<offset>', 'byte offset', int('offset'))
  .action((vmid, offset) =>
    withClient(async (c) => {
      const data = await readStdin();
      const moved = await c.vmMove(vmid, offset, data.length, UIO_WRITE, { iov: [data], offset: 0, resid: data.length, segflg: 0 });
      emit({ moved }, `wrote ${moved} bytes`);
    }),
  );

program
  .command('pageout')
  .description('page out the modified pages of a range (vm_writep), optionally waiting (vms_iowait)')
  .argument('<vmid>', 'segment', int('vmid'))
  .argument('<pfirst>', 'first page', int('pfirst'))
  .argument('<npages>', 'pages', int('npages'))
  .addOption(new Option('--wait', 'wait until the page-outs are durable'))
  .action((vmid, pfirst, npages, opts) =>
    withClient(async (c) => {
      await c.vmWritep(vmid, pfirst, npages);
      if (opts.wait) await c.vmsIowait(vmid);
      emit({ vmid, pfirst, npages, waited: Boolean(opts.wait) }, `page-out ${opts.wait ? 'complete' : 'initiated'}`);
    }),
  );

program
  .command('release')
  .description('release a page range (vm_releasep): it reads as zeros from now on')
  .argument('<vmid>', 'segment', int('vmid'))
  .argument('<pfirst>', 'first page', int('pfirst'))
  .argument('<npages>', 'pages', int('npages'))
  .action((vmid, pfirst, npages) =>
    withClient(async (c) => {
      await c.vmReleasep(vmid, pfirst, npages);
      emit({ vmid, pfirst, npages }, 'released');
    }),
  );

program
  .command('iowait')
  .description('wait until every page-out of the segment initiated so far is durable')
  .argument('<vmid>', 'segment', int('vmid'))
  .action((vmid) =>
    withClient(async (c) => {
      await c.vmsIowait(vmid);
      emit({ vmid }, 'all page-outs complete');
    }),
  );

program
  .command('verify')
  .description('scrub the store: every mapped slot against its checksum')
  .action(() =>
    withClient(async (c) => {
      const bar = progressBar('verifying');
      const report = await c.verify(bar.update);
      bar.stop();
      emit(report, report.ok ? `ok: ${report.pages} pages verified` : `PROBLEMS: ${JSON.stringify(report)}`);
      if (!report.ok) process.exitCode = EXIT.SERVICE;
    }),
  );

program.parseAsync().catch((err: unknown) => {
  if (err instanceof PagerError) {
    console.error(`pagerctl: ${err.code} (${err.reason}): ${err.detail}`);
    if (program.opts().json) process.stdout.write(`${JSON.stringify({ error: { code: err.code, errno: err.errno, reason: err.reason } })}\n`);
    process.exit(EXIT.SERVICE);
  }
  console.error(`pagerctl: ${(err as Error)?.message ?? String(err)}`);
  process.exit(EXIT.SERVICE);
});


#!/usr/bin/env node
/**
 * pagerctl: talk to a running pagerd. Results go to stdout (`--json`: one JSON document); human
 * text and errors go to stderr (`--json`: one JSON line, {"error": {code, errno, reason, message}}).
 * Exit statuses: src/cli/exit-status.ts.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { errnoNumber } from '../errors.js';
import { PagerError, UIO_READ, UIO_WRITE, V_CLIENT, V_PERSISTENT, V_WORKING, connect, NOT_A_REGULAR_FILE, FILE_IN_USE, FILE_HAS_SEGMENT, NOT_THE_FILES_SEGMENT, SEGMENT_IN_USE, SEGMENT_TAKEN, serveFile, type PagerClient } from '../client/index.js';
import { parseSize } from '../config/tunables.js';
import { VERSION } from '../version.js';
import { EXIT, exitName, exitStatusHelp, exitStatusOf, type ExitStatus } from './exit-status.js';
import { progressBar } from './progress.js';
import { parsePrometheusText } from './prometheus-text.js';

// The file pager (map-file) keeps many positional reads and writes in flight: libuv's default
// pool of 4 threads would serialize them. Set before the pool is first used.
process.env.UV_THREADPOOL_SIZE ??= '16';

const TYPES: Record<string, number> = { working: V_WORKING, client: V_CLIENT, persistent: V_PERSISTENT };

/** --json, known before commander has parsed anything (its own usage errors are reported in JSON too). */
const json = process.argv.slice(2).includes('--json');

/** A failure of pagerctl itself (not a service's answer), with its exit status and a short reason. */
class CtlError extends Error {
  constructor(
    readonly exitStatus: ExitStatus,
    readonly reason: string,
    message: string,
    readonly errno?: number,
  ) {
    super(message);
  }
}

/** Reports an error (one plain line, or one JSON line with --json, on stderr) and exits with its status. */
function fail(err: unknown): never {
  const status = exitStatusOf(err, 'pagerctl');
  let error: { code: string; errno?: number; reason: string; message: string };
  if (err instanceof PagerError) {
    error = { code: err.code, errno: err.errno, reason: err.reason, message: err.detail };
  } else if (err instanceof CtlError) {
    error = { code: exitName(status), errno: err.errno, reason: err.reason, message: err.message };
  } else {
    error = { code: exitName(status), reason: status === EXIT.SOFTWARE ? 'internal-error' : 'failed', message: (err as Error)?.message ?? String(err) };
  }
  if (json) process.stderr.write(`${JSON.stringify({ error })}\n`);
  else if (err instanceof PagerError) process.stderr.write(`pagerctl: ${err.code} (${err.reason}): ${err.detail}\n`);
  else process.stderr.write(`pagerctl: ${error.message}\n`);
  process.exit(status);
}

const program = new Command()
  .name('pagerctl')
  .description('control and inspect a running pagerd')
  .version(VERSION)
  .option('--socket <path>', 'daemon socket (default $PAGERD_SOCKET, then ./var/pagerd.sock)')
  .option('--json', 'results as one JSON document on stdout, errors as one JSON line on stderr')
  .addHelpText('after', `\n${exitStatusHelp()}`)
  .configureOutput({
    // One line per error: commander's own (a bad flag or argument) as pagerctl's, or as JSON.
    outputError: (text, write) => {
      const message = text.replace(/^error: /, '').trim();
      write(json ? `${JSON.stringify({ error: { code: 'EX_USAGE', reason: 'usage', message } })}\n` : `pagerctl: ${message} (pagerctl --help)\n`);
    },
  })
  .exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE));

/** Bytes `pagerctl read` moves at a time. */
const READ_CHUNK_BYTES = 1024 * 1024;
/** Most bytes `pagerctl --json read` answers (base64 in one JSON string). */
const JSON_READ_MAX_BYTES = 256 * 1024 * 1024;

/** Argument parsers: a bad value is a usage error (64) naming the argument. */
/** A parser of whole numbers written as `form` allows, no larger than the largest safe integer. */
const wholeNumber =
  (form: RegExp, what: string) =>
  (v: string): number => {
    const n = Number(v);
    if (!form.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`not ${what}.`);
    return n;
  };
const integer = wholeNumber(/^[0-9]+$/, 'a non-negative integer (decimal digits only)');
/** A bit mask: decimal, or hexadecimal after 0x (the daemon refuses bits it does not know). */
const bits = wholeNumber(/^([0-9]+|0x[0-9a-fA-F]+)$/, 'option bits (decimal, or hexadecimal such as 0x10000000)');
const size = (v: string): number => {
  try {
    return parseSize(v);
  } catch {
    throw new InvalidArgumentError('not a size (such as 4096, 64KiB, 1GiB).');
  }
};
const octalMode = (v: string): number => {
  if (!/^0?[0-7]{3}$/.test(v)) throw new InvalidArgumentError('not permission bits in octal (such as 640).');
  return parseInt(v, 8);
};
const segmentType = (v: string): number => {
  if (!(v in TYPES)) throw new InvalidArgumentError('must be working, client or persistent.');
  return TYPES[v];
};

/** Prints a result: JSON on stdout with --json, else the human text on stderr. */
function emit(result: unknown, human: string): void {
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else process.stderr.write(`${human}\n`);
}

async function withClient<T>(work: (c: PagerClient) => Promise<T>): Promise<T> {
  const socket = program.opts().socket;
  let client: PagerClient;
  try {
    client = await connect({ socket });
  } catch (err) {
    throw unreachable(err, socket ?? process.env.PAGERD_SOCKET ?? './var/pagerd.sock');
  }
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

/** Why the daemon could not be reached, as its exit status: permission (77), busy (75), else unreachable (69). */
function unreachable(err: unknown, socket: string): CtlError {
  const code = (err as { code?: string }).code ?? '';
  const errno = errnoNumber(code);
  const message = `cannot reach pagerd at ${socket}: ${(err as Error).message}`;
  if (code === 'EACCES' || code === 'EPERM') return new CtlError(EXIT.NOPERM, 'permission', message, errno);
  if (code === 'EAGAIN') return new CtlError(EXIT.TEMPFAIL, 'busy', message, errno);
  return new CtlError(EXIT.UNAVAILABLE, 'unreachable', message, errno);
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * mkdir -p. Not mkdirSync's recursive mode: on a file system that answers ENOENT for a directory
 * whose parent exists (/proc), that retries for ever.
 */
function makeDirectory(dir: string): void {
  try {
    mkdirSync(dir);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return;
    if (code !== 'ENOENT' || existsSync(dirname(dir))) throw new CtlError(EXIT.CANTCREAT, 'cannot-create', (err as Error).message);
  }
  makeDirectory(dirname(dir));
  makeDirectory(dir);
}

/** A stdout that cannot take what is written (closed early by `| head`, a full disk): one line, 74. */
function stdoutFailed(err: Error): never {
  fail(new CtlError(EXIT.IOERR, 'output', `cannot write to stdout: ${err.message}`));
}
// Without a listener the stream's 'error' event would end the process with a stack trace; a
// write without a callback (emit) fails here too.
process.stdout.on('error', stdoutFailed);

/** Writes bytes to stdout; resolves once they are written (a failure ends the process: stdoutFailed). */
function writeOut(data: Uint8Array | string): Promise<void> {
  return new Promise((resolve) => process.stdout.write(data, (err) => (err ? stdoutFailed(err) : resolve())));
}

program
  .command('status')
  .description('is the daemon up, and how is it')
  .action(() =>
    withClient(async (c) => {
      const s = (await c.stats()) as { pageSize: number; frames: number; segments: number; connections: number; dirty: number; storeFailed: boolean };
      emit({ up: true, ...s }, `pagerd is up: page size ${s.pageSize}, ${s.frames} frames (${s.dirty} dirty), ${s.segments} segments, ${s.connections} connections${s.storeFailed ? ', STORE FAILED' : ''}`);
    }),
  );

program
  .command('stats')
  .description('daemon statistics: frames, counters, slots, connections')
  .action(() =>
    withClient(async (c) => {
      const s = await c.stats();
      emit(s, humanLines(s).join('\n'));
    }),
  );

program
  .command('metrics')
  .description('the Prometheus metrics (text format; --json: parsed metric families)')
  .action(() =>
    withClient(async (c) => {
      const text = await c.metrics();
      await writeOut(json ? `${JSON.stringify(parsePrometheusText(text))}\n` : text);
    }),
  );

const segments = program.command('segments').description('list, create and delete segments (default: list)');
segments
  .command('list', { isDefault: true })
  .description('the segments this user may see: vmid, type, extent, mode, resident pages')
  .action(() =>
    withClient(async (c) => {
      const list = await c.segments();
      emit(list, list.map((s) => `${s.vmid}\ttype ${s.type}\textent ${s.extent}\tmode ${s.mode.toString(8)}\tresident ${s.residentPages}\tdevice ${s.device ?? '-'}`).join('\n') || '(no segments)');
    }),
  );
segments
  .command('create')
  .description('create a segment (vms_create) and print its vmid')
  .argument('<type>', 'working, client or persistent', segmentType)
  .argument('<size>', 'bytes, e.g. 64MiB', size)
  .addOption(new Option('--mode <octal>', 'permission bits').default(0o600, '600').argParser(octalMode))
  .addOption(new Option('--options <bits>', 'AIX option bits, decimal or 0x hex: V_INTRSEG, V_LGPAGE ...').default(0).argParser(bits))
  .action((type, bytes, opts) =>
    withClient(async (c) => {
      const vmid = await c.vmsCreate(type, bytes, opts.options, opts.mode);
      emit({ vmid }, `created segment ${vmid}`);
    }),
  );
segments
  .command('delete')
  .description('delete a segment (vms_delete): its pages and backing slots are freed')
  .argument('<vmid>', 'segment', integer)
  .action((vmid) =>
    withClient(async (c) => {
      await c.vmsDelete(vmid);
      emit({ deleted: vmid }, `deleted segment ${vmid}`);
    }),
  );

program
  .command('read')
  .description(`write bytes of a segment to stdout, ${READ_CHUNK_BYTES / 1024 / 1024} MiB per move (--json: {moved, base64}, at most ${JSON_READ_MAX_BYTES / 1024 / 1024} MiB)`)
  .argument('<vmid>', 'segment', integer)
  .argument('<offset>', 'byte offset', integer)
  .argument('<length>', 'bytes', integer)
  .action((vmid, offset, length) =>
    withClient(async (c) => {
      if (json && length > JSON_READ_MAX_BYTES) throw new CtlError(EXIT.USAGE, 'usage', `--json reads at most ${JSON_READ_MAX_BYTES} bytes (its base64 is one string); read without --json`);
      // A range past the end fails as one move of it would, before any byte is written. Then
      // pieces: memory follows the move, not the length asked for.
      const extent = (await c.segments()).find((s) => s.vmid === vmid)?.extent;
      if (extent !== undefined && offset + length > extent) throw new PagerError('beyond-extent');
      const chunks: Uint8Array[] = [];
      let moved = 0;
      do {
        const n = Math.min(READ_CHUNK_BYTES, length - moved);
        const buf = new Uint8Array(n);
        moved += await c.vmMove(vmid, offset + moved, n, UIO_READ, { iov: [buf], offset: 0, resid: n, segflg: 0 });
        if (json) chunks.push(buf);
        else await writeOut(buf);
      } while (moved < length);
      if (json) await writeOut(`${JSON.stringify({ vmid, offset, moved, base64: Buffer.concat(chunks).toString('base64') })}\n`);
    }),
  );

program
  .command('write')
  .description('write stdin into a segment')
  .argument('<vmid>', 'segment', integer)
  .argument('<offset>', 'byte offset', integer)
  .action((vmid, offset) =>
    withClient(async (c) => {
      const data = await readStdin();
      const moved = await c.vmMove(vmid, offset, data.length, UIO_WRITE, { iov: [data], offset: 0, resid: data.length, segflg: 0 });
      emit({ vmid, offset, moved }, `wrote ${moved} bytes`);
    }),
  );

program
  .command('pageout')
  .description('page out the modified pages of a range (vm_writep), optionally waiting (vms_iowait)')
  .argument('<vmid>', 'segment', integer)
  .argument('<pfirst>', 'first page', integer)
  .argument('<npages>', 'pages', integer)
  .option('--wait', 'wait until the page-outs are durable')
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
  .argument('<vmid>', 'segment', integer)
  .argument('<pfirst>', 'first page', integer)
  .argument('<npages>', 'pages', integer)
  .action((vmid, pfirst, npages) =>
    withClient(async (c) => {
      await c.vmReleasep(vmid, pfirst, npages);
      emit({ vmid, pfirst, npages }, 'released');
    }),
  );

program
  .command('iowait')
  .description('wait until every page-out of the segment initiated so far is durable')
  .argument('<vmid>', 'segment', integer)
  .action((vmid) =>
    withClient(async (c) => {
      await c.vmsIowait(vmid);
      emit({ vmid }, 'all page-outs complete');
    }),
  );

program
  .command('verify')
  .description('scrub the store: every mapped slot against its checksum (exit 65 if any fails)')
  .action(() =>
    withClient(async (c) => {
      const bar = progressBar('verifying');
      const report = await c.verify(bar.update);
      bar.stop();
      emit(report, report.ok ? `ok: ${report.pages} pages verified` : `PROBLEMS: ${JSON.stringify(report)}`);
      if (!report.ok) process.exitCode = EXIT.DATAERR;
    }),
  );

program
  .command('devices')
  .description('the paging device table: client file systems mounted (vmMounte), their uid, whether page-outs reach them by frame reference, the segments bound to each, their I/O')
  .action(() =>
    withClient(async (c) => {
      const list = await c.devices();
      emit(
        list,
        list.map((d) => `device ${d.id}\tuid ${d.uid}\t${d.alive ? 'live' : 'GONE'}\t${d.sharedFrames ? 'writes by frame' : 'writes as bytes'}\tsegments ${d.segments.join(',') || '-'}\tin flight ${d.inFlight}\tqueued ${d.queued}\trequests ${d.requests}`).join('\n') || '(no paging devices)',
      );
    }),
  );

/** Why open(2) refuses a file for writing that exists: permissions, an immutable file, a read-only file system. */
const NOT_WRITABLE = new Set(['EACCES', 'EPERM', 'EROFS']);

/** serveFile's refusals (by their `code`): the exit status and reason map-file answers them with. */
const MAP_FILE_REFUSALS: Record<string, [ExitStatus, string]> = {
  ENOENT: [EXIT.NOINPUT, 'no-such-file'],
  [NOT_A_REGULAR_FILE]: [EXIT.NOINPUT, 'not-a-regular-file'],
  [FILE_IN_USE]: [EXIT.TEMPFAIL, 'file-in-use'],
  [SEGMENT_IN_USE]: [EXIT.TEMPFAIL, 'segment-in-use'],
  [FILE_HAS_SEGMENT]: [EXIT.TEMPFAIL, 'file-has-segment'],
  [NOT_THE_FILES_SEGMENT]: [EXIT.DATAERR, 'not-the-files-segment'],
};

program
  .command('map-file')
  .description('serve a regular file as a client segment (the reference client file system) until interrupted: prints the vmid; page-ins read the file, page-outs write it in place and fdatasync; a paging device pagerd failed (answers too late) is replaced, and said so (with --json, a {"remounted"} line); exits 69 if its segment is taken from it; exits 75 while the segment of an earlier map-file of FILE is still there (recorded in its user.pagerd.segment attribute: adopt it with --vmid)')
  .argument('<file>', 'an existing regular file: the segment is its size, rounded up to pages')
  .addOption(new Option('--mode <octal>', 'permission bits of the segment').default(0o600, '600').argParser(octalMode))
  .addOption(new Option('--vmid <vmid>', "adopt this client segment (its file system gone: the pages it held modified are written to FILE) instead of creating one; it must be of FILE's size, and served by no live device").argParser(integer))
  .action((file: string, opts: { mode: number; vmid?: number }) =>
    withClient(async (c) => {
      // Events while it serves: a line on stderr, or with --json a JSON line on stdout.
      const tell = (event: string, detail: object, text: string): void => {
        if (json) process.stdout.write(`${JSON.stringify({ [event]: detail })}\n`);
        else process.stderr.write(`pagerctl: ${text}\n`);
      };
      let onLost!: (err: Error) => void;
      const taken = new Promise<Error>((resolve) => (onLost = resolve));
      // Its page-outs read the daemon's frames where it offers them: it writes pages only as their file system.
      const pager = await serveFile(c, file, {
        mode: opts.mode,
        sharedFrames: true,
        vmid: opts.vmid,
        onRemount: (failed, device) => tell('remounted', { failed, device }, `paging device ${failed} was failed by pagerd (its answers came too late); serving on device ${device}`),
        onAdoptedNotWritten: (err) => tell('notWritten', { message: err.message }, `the pages segment ${opts.vmid} held could not all be written to ${file} yet (${err.message}); they stay modified and are written again`),
        onLost,
      }).catch((err: unknown) => {
        const { code = '', syscall } = err as NodeJS.ErrnoException;
        // map-file writes page-outs in place: a file it may read but not write is refused at once.
        if (syscall === 'open' && NOT_WRITABLE.has(code)) throw new CtlError(EXIT.NOPERM, 'file-not-writable', `${file} cannot be opened for writing (${code}): map-file writes its page-outs into it`);
        const refusal = MAP_FILE_REFUSALS[code];
        throw refusal === undefined ? err : new CtlError(refusal[0], refusal[1], (err as Error).message);
      });
      emit({ file, vmid: pager.vmid, device: pager.device, size: pager.size }, `serving ${file} as segment ${pager.vmid} (paging device ${pager.device}); interrupt to stop`);
      if (pager.unrecorded !== undefined) {
        const why = pager.unrecorded.message;
        tell('notRecorded', { message: why }, `segment ${pager.vmid} could not be recorded in ${file} (${why}): if this map-file goes away with modified pages, a plain map-file of ${file} will not know of them (adopt the segment with --vmid ${pager.vmid})`);
      }
      const ended = await new Promise<CtlError | undefined>((resolve) => {
        // Installed for good: a second signal (a second Ctrl-C; timeout(1) signals the command and
        // then its process group) must not kill the stop halfway.
        let stopping = false;
        const stop = (): void => {
          if (stopping && !json) process.stderr.write(`pagerctl: stopping already, writing segment ${pager.vmid}'s modified pages to ${file} (SIGKILL aborts; they stay in pagerd)\n`);
          stopping = true;
          resolve(undefined);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        void c.closed().then((err) => resolve(new CtlError(EXIT.UNAVAILABLE, 'unreachable', `pagerd closed the connection: ${err.message}`)));
        void taken.then((err) => resolve(new CtlError(EXIT.UNAVAILABLE, 'segment-taken', err.message)));
      });
      if (ended !== undefined) throw ended;
      // Every modified page written to the file and synced first; what cannot be stays in pagerd.
      await pager.stop().catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code === SEGMENT_TAKEN || (err instanceof PagerError && err.reason === 'no-such-segment')) {
          throw new CtlError(EXIT.UNAVAILABLE, 'segment-taken', (err as Error).message);
        }
        const why = err instanceof PagerError ? `${err.code} (${err.reason}): ${err.detail}` : (err as Error).message;
        throw new CtlError(EXIT.IOERR, 'not-written', `segment ${pager.vmid}'s modified pages could not all be written to ${file}: ${why}; they stay in pagerd (pagerctl map-file ${file} --vmid ${pager.vmid} writes them once the cause is fixed)`);
      });
    }),
  );

program
  .command('backup')
  .description('copy the live store into DIR (a new or empty directory): the device, then a snapshot of the metadata, taken while page-outs are held (docs/operations.md: backup and restore)')
  .argument('<dir>', 'directory for the copy: backing (sparse) and pagerd.sqlite')
  .action((dir: string) =>
    withClient(async (c) => {
      const into = resolve(dir);
      makeDirectory(into);
      if (readdirSync(into).length > 0) throw new CtlError(EXIT.CANTCREAT, 'not-empty', `${into} is not empty: a backup goes into a new or empty directory`);
      const started = performance.now();
      const device = await c.backupBegin();
      // A sparse copy: holes (never-written slots) stay holes. cp reads the device as it is now:
      // the daemon writes no slot until backupFinish.
      const cp = spawnSync('cp', ['--sparse=always', device, join(into, 'backing')], { encoding: 'utf8' });
      if (cp.error !== undefined || cp.status !== 0) {
        const why = cp.error?.message ?? (cp.stderr.trim().split('\n')[0] || `cp exited with ${cp.status ?? cp.signal}`);
        throw new CtlError(EXIT.IOERR, 'copy-failed', `copying ${device}: ${why}`);
      }
      const snapshot = await c.backupFinish();
      copyFileSync(snapshot, join(into, 'pagerd.sqlite'));
      rmSync(snapshot, { force: true });
      const made = { dir: into, device, deviceBytes: statSync(join(into, 'backing')).size, seconds: Math.round(performance.now() - started) / 1000 };
      writeFileSync(join(into, 'backup.json'), `${JSON.stringify({ ...made, version: VERSION, takenAt: new Date().toISOString() }, null, 2)}\n`);
      emit(made, `backed up ${device} (${made.deviceBytes} bytes) and its metadata into ${into} in ${made.seconds} s`);
    }),
  );

/** An object as `key: value` lines, nested keys joined with dots. */
function humanLines(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null) return [`${prefix}: ${String(value)}`];
  return Object.entries(value).flatMap(([k, v]) => humanLines(v, prefix === '' ? k : `${prefix}.${k}`));
}

program.parseAsync().catch(fail);

#!/usr/bin/env node
/**
 * pagerd: the daemon, in the foreground. With no flags it runs on its embedded default: state
 * under ./var ($PAGERD_STATE_DIR), a 1 GiB sparse backing file and the SQLite database created on
 * first start, the socket at ./var/pagerd.sock ($PAGERD_SOCKET). No root needed.
 *
 * Every error ends in one plain line on stderr and an exit status from src/cli/exit-status.ts
 * (the stack is logged too at --log-level debug).
 */
import { Command, Option } from 'commander';
import type { Logger } from 'pino';
import { loadConfig } from '../config/load-config.js';
import { TUNABLES, type Config, type TunableKey } from '../config/tunables.js';
import { Daemon, lostPages, openConfiguredStore } from '../server/daemon.js';
import { createLogger } from '../server/logger.js';
import { SystemdNotifier } from '../server/systemd.js';
import { scrub } from '../store/scrub.js';
import { emptyScrubTotals } from '../scrub-report.js';
import { VERSION } from '../version.js';
import { EXIT, exitStatusHelp, exitStatusOf } from './exit-status.js';
import { progressBar } from './progress.js';

// Page-out cycles keep many positional writes in flight; libuv's pool of 4 threads would serialize
// them. Set before the pool is first used (it is created lazily, at the first fs call).
process.env.UV_THREADPOOL_SIZE ??= '16';

/** The tunables settable by a flag, and their flags (described by the tunables declaration). */
const FLAGS: Partial<Record<TunableKey, { flag: string; arg?: string }>> = {
  socket: { flag: '--socket', arg: '<path>' },
  nbdSocket: { flag: '--nbd-socket', arg: '<path>' },
  stateDir: { flag: '--state-dir', arg: '<dir>' },
  device: { flag: '--device', arg: '<path>' },
  'memory.size': { flag: '--memory', arg: '<size>' },
  metricsListen: { flag: '--metrics-listen', arg: '<host:port>' },
  logLevel: { flag: '--log-level', arg: '<level>' },
  logFormat: { flag: '--log-format', arg: '<format>' },
  format: { flag: '--format' },
};

const program = new Command()
  .name('pagerd')
  .description('userspace pager daemon: the AIX VMM services over a Unix socket')
  .version(VERSION)
  .option('--config <file>', 'JSON configuration file (see config/pagerd.default.json)');
for (const [key, { flag, arg }] of Object.entries(FLAGS) as [TunableKey, { flag: string; arg?: string }][]) {
  program.addOption(new Option(arg === undefined ? flag : `${flag} ${arg}`, TUNABLES[key].description));
}
program
  .option('--check', 'check the store offline (integrity and every checksum), print a JSON summary, and exit')
  .addHelpText('after', `\nEvery setting also has a PAGERD_* variable and a config file key (config/pagerd.default.json).\n\n${exitStatusHelp()}`)
  .configureOutput({ outputError: (text, write) => write(`pagerd: ${text.replace(/^error: /, '').trim()} (pagerd --help)\n`) })
  .exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE));

/** The flag values given, by tunable key, and each key's flag (for errors). */
function flagValues(opts: Record<string, unknown>): { flags: Partial<Record<TunableKey, unknown>>; flagNames: Partial<Record<TunableKey, string>> } {
  const flags: Partial<Record<TunableKey, unknown>> = {};
  const flagNames: Partial<Record<TunableKey, string>> = {};
  for (const [key, { flag }] of Object.entries(FLAGS) as [TunableKey, { flag: string }][]) {
    const attribute = flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    flags[key] = opts[attribute];
    flagNames[key] = flag;
  }
  return { flags, flagNames };
}

/** Ends the process on an error: one line on stderr (the stack in the log at debug), and its exit status. */
function die(err: unknown, log?: Logger): never {
  log?.debug({ err }, 'exiting on an error');
  process.stderr.write(`pagerd: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(exitStatusOf(err));
}

async function main(): Promise<void> {
  program.parse();
  const opts = program.opts<{ config?: string; check?: boolean } & Record<string, unknown>>();
  const { flags, flagNames } = flagValues(opts);
  let config: Config;
  try {
    config = loadConfig({ file: opts.config, env: process.env, flags, flagNames });
  } catch (err) {
    die(err);
  }
  const log = createLogger(config.logLevel, config.logFormat);
  // An exception nobody handled is a bug: going on would serve from state in doubt. Logged, then
  // exit EX_SOFTWARE; systemd restarts the daemon and the store recovers as after a crash.
  const fatal = (kind: string) => (err: unknown) => {
    log.debug({ err }, kind);
    process.stderr.write(`pagerd: internal error (${kind}): ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(EXIT.SOFTWARE);
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled rejection'));

  if (opts.check) return check(config, log);

  const systemd = new SystemdNotifier(process.env, (err) => log.warn({ err }, 'sd_notify failed'));
  // Signals are handled from the start: a SIGHUP or SIGTERM during start-up must not kill us
  // with the default action.
  let daemon: Daemon | undefined;
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stop requested');
    if (daemon === undefined) return; // start-up finishes, then stops
    systemd.notify('STOPPING=1\nSTATUS=paging out modified pages');
    systemd.stopWatchdog();
    daemon.stop().then(
      (unsaved) => {
        if (unsaved === 0) process.exit(EXIT.OK);
        // Not a graceful stop: writes no vms_iowait confirmed are gone, and the operator must know.
        process.stderr.write(`pagerd: stopped, but ${lostPages(unsaved)}\n`);
        process.exit(EXIT.IOERR);
      },
      (err: unknown) => die(Object.assign(new Error(`stop failed: ${(err as Error)?.message ?? String(err)}`), { exitStatus: exitStatusOf(err) }), log),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    try {
      const fresh = loadConfig({ file: opts.config, env: process.env, flags: { logLevel: flags.logLevel }, flagNames });
      log.level = fresh.logLevel;
      log.info({ logLevel: fresh.logLevel }, 'log level reloaded');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'SIGHUP: configuration not reloaded');
    }
  });

  try {
    daemon = await Daemon.start(config, log);
  } catch (err) {
    die(err, log);
  }
  systemd.notify('READY=1\nSTATUS=serving');
  const running = daemon;
  // The page map is checked in the background (page-outs wait for it): a contradiction found
  // there is corruption found at start-up, refused as at open.
  running.store.pageMapChecked.catch((err: unknown) => die(err, log));
  systemd.startWatchdog(process.env, config['server.watchdogMs'], (timeoutMs) => running.store.pageOutsProgressing(timeoutMs));
  if (stopping) {
    stopping = false;
    stop('a signal during start-up');
  }
}

/** --check: the store checked offline; one JSON summary on stdout; EX_DATAERR if it found corruption. */
async function check(config: Config, log: Logger): Promise<void> {
  const store = await openConfiguredStore(config, log, undefined, { reportOnly: true }).catch((err: unknown) => die(err, log));
  const bar = progressBar('checking');
  const integrity = store.checkMetadata();
  const pageMap = store.pageMapProblems;
  // The slots are read through the page map: one with problems (listed in pageMap) is not walked.
  const report = pageMap.count === 0 ? await scrub(store, bar.update) : { ...emptyScrubTotals(), ok: false, skipped: 'the page map has problems' };
  bar.stop();
  const ok = report.ok && integrity === 'ok' && pageMap.count === 0;
  // A store found corrupt is left as it was found (not marked cleanly shut down).
  await (ok ? store.close() : store.abort());
  process.stdout.write(`${JSON.stringify({ integrity, pageMap, ...report, ok })}\n`);
  process.exit(ok ? EXIT.OK : EXIT.DATAERR);
}

main().catch((err: unknown) => die(err));

#!/usr/bin/env node
/**
 * pagerd: the daemon, in the foreground. With no flags it runs on its embedded default: state
 * under ./var ($PAGERD_STATE_DIR), a 1 GiB sparse backing file and the SQLite database created on
 * first start, the socket at ./var/pagerd.sock ($PAGERD_SOCKET). No root needed.
 *
 * Exit status: 0 after a graceful stop, 1 on a failure, 65 when the device and the metadata
 * contradict each other (a lost WAL, an older database or device image), 70 on an internal error
 * (an exception nothing handled), 78 on a bad configuration or a store it refuses to open
 * (systemd: RestartPreventExitStatus=65 78).
 */
import { Command } from '@commander-js/extra-typings';
import { pino } from 'pino';
import { ConfigError, loadConfig } from '../config/load-config.js';
import type { Config } from '../config/tunables.js';
import { Daemon, openConfiguredStore } from '../server/daemon.js';
import { DeviceMissingError, SocketInUseError } from '../server/start-refusals.js';
import { SystemdNotifier } from '../server/systemd.js';
import { scrub } from '../store/scrub.js';
import { progressBar } from './progress.js';
import { StoreCorruptError, StoreRefusedError } from '../store/persistent-store.js';

const EXIT_CONFIG = 78;
const EXIT_DATAERR = 65;
const EXIT_SOFTWARE = 70;

// Page-out cycles keep many positional writes in flight; libuv's pool of 4 threads would serialize
// them. Set before the pool is first used (it is created lazily, at the first fs call).
process.env.UV_THREADPOOL_SIZE ??= '16';

const program = new Command()
  .name('pagerd')
  .description('userspace pager daemon: the AIX VMM services over a Unix socket')
  .option('--config <file>', 'JSON configuration file (see config/pagerd.default.json)')
  .option('--socket <path>', 'Unix socket to listen on')
  .option('--nbd-socket <path>', 'also serve segments as NBD exports on this Unix socket')
  .option('--state-dir <dir>', 'directory of the SQLite database and the default backing file')
  .option('--device <path>', 'backing file or block device (default <state-dir>/backing)')
  .option('--memory <size>', 'frame pool size, e.g. 256MiB')
  .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
  .option('--format', 'format the device even if it holds something else (destroys its contents)')
  .option('--check', 'check the store offline (integrity and every checksum), print a JSON summary, and exit')
  .showHelpAfterError();

program.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 64));

async function main(): Promise<void> {
  program.parse();
  const opts = program.opts();
  let config: Config;
  try {
    config = loadConfig({
      file: opts.config,
      env: process.env,
      flags: { socket: opts.socket, nbdSocket: opts.nbdSocket, stateDir: opts.stateDir, device: opts.device, 'memory.size': opts.memory, logLevel: opts.logLevel, format: opts.format },
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`pagerd: ${err.message}`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
  const log = pino({ level: config.logLevel, base: { pid: process.pid } });
  // An exception nobody handled is a bug: going on would serve from state in doubt. Logged, then
  // exit EX_SOFTWARE; systemd restarts the daemon and the store recovers as after a crash.
  const fatal = (kind: string) => (err: unknown) => {
    log.fatal({ err }, kind);
    process.exit(EXIT_SOFTWARE);
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled rejection'));

  if (opts.check) {
    const store = await openConfiguredStore(config, log, undefined, { reportOnly: true }).catch((err: unknown) => {
      console.error(`pagerd: ${(err as Error).message}`);
      process.exit(startFailureStatus(err));
    });
    const bar = progressBar('checking');
    const integrity = store.checkMetadata();
    const report = await scrub(store, bar.update);
    bar.stop();
    const pageMap = store.pageMapProblems;
    const ok = report.ok && integrity === 'ok' && pageMap.count === 0;
    // A store found corrupt is left as it was found (not marked cleanly shut down).
    await (ok ? store.close() : store.abort());
    process.stdout.write(`${JSON.stringify({ integrity, pageMap, ...report, ok })}\n`);
    process.exit(ok ? 0 : EXIT_DATAERR);
  }

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
      () => process.exit(0),
      (err) => {
        log.fatal({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    try {
      const fresh = loadConfig({ file: opts.config, env: process.env, flags: { logLevel: opts.logLevel } });
      log.level = fresh.logLevel;
      log.info({ logLevel: fresh.logLevel }, 'log level reloaded');
    } catch (err) {
      log.warn({ err }, 'SIGHUP: configuration not reloaded');
    }
  });

  try {
    daemon = await Daemon.start(config, log);
  } catch (err) {
    log.fatal({ err }, 'pagerd could not start');
    console.error(`pagerd: ${(err as Error).message}`);
    process.exit(startFailureStatus(err));
  }
  systemd.notify('READY=1\nSTATUS=serving');
  const running = daemon;
  // The page map is checked in the background (page-outs wait for it): a contradiction found
  // there is corruption found at start-up, refused as at open.
  running.store.pageMapChecked.catch((err: unknown) => {
    log.fatal({ err }, 'the page map failed its check');
    console.error(`pagerd: ${(err as Error).message}`);
    process.exit(startFailureStatus(err));
  });
  systemd.startWatchdog(process.env, config['server.watchdogMs'], (timeoutMs) => running.store.pageOutsProgressing(timeoutMs));
  if (stopping) {
    stopping = false;
    stop('a signal during start-up');
  }
}

main().catch((err) => {
  console.error(`pagerd: ${(err as Error)?.stack ?? String(err)}`);
  process.exit(1);
});

/** The exit status for a failed start: 65 for a store whose parts contradict each other, 66 a device that does not exist, 75 a socket in use, 78 a store refused, else 1. */
function startFailureStatus(err: unknown): number {
  if (err instanceof DeviceMissingError || err instanceof SocketInUseError) return err.exitStatus;
  if (err instanceof StoreCorruptError) return EXIT_DATAERR;
  if (err instanceof ConfigError) return EXIT_CONFIG;
  return err instanceof StoreRefusedError ? EXIT_CONFIG : 1;
}

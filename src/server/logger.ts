import { isatty } from 'node:tty';
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

/** Where the daemon logs: stderr, so that stdout carries only what a command prints (--check's summary). */
const LOG_FD = 2;

/**
 * The daemon's logger: pino JSON lines on stderr, written synchronously (a fatal line must be out
 * before the exit that follows it), or pino-pretty's lines for a person when `format` is pretty,
 * or auto and stderr is a terminal.
 */
export function createLogger(level: string, format: 'auto' | 'json' | 'pretty'): Logger {
  const options = { level, base: { pid: process.pid } };
  const terminal = isatty(LOG_FD);
  if (format === 'pretty' || (format === 'auto' && terminal)) {
    return pino(options, pretty({ destination: LOG_FD, sync: true, colorize: terminal, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  }
  return pino(options, pino.destination({ dest: LOG_FD, sync: true }));
}

/**
 * pagerd's client library: the package's public entry point, listed by hand. Imports nothing
 * native.
 */
import { PagerClient, type ConnectOptions } from './client.js';

export { PagerClient, type ConnectOptions, type Uio, type WaitOptions } from './client.js';
export { PagerError, ERRNO, REASONS, type ErrorCode, type Reason } from '../errors.js';
export * from '../constants.js';

/** Connects to pagerd (socket: options.socket, else $PAGERD_SOCKET, else ./var/pagerd.sock). */
export function connect(options: ConnectOptions = {}): Promise<PagerClient> {
  return PagerClient.connect(options);
}

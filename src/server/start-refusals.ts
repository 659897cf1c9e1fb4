/** Start-ups refused before anything is created on disk, each with its own exit status (sysexits). */

/** The configured device does not exist: a mistyped path must not become a new store (EX_NOINPUT). */
export class DeviceMissingError extends Error {
  readonly exitStatus = 66;
  constructor(path: string) {
    super(`the device ${path} does not exist: pagerd uses an existing file or block device as given (leave device empty for <state-dir>/backing, created on first start)`);
  }
}

/** Another pagerd answers on the socket: try again once it has stopped (EX_TEMPFAIL). */
export class SocketInUseError extends Error {
  readonly exitStatus = 75;
  constructor(path: string) {
    super(`another pagerd is listening on ${path}`);
  }
}

/**
 * NBD protocol numbers (the NBD project's doc/proto.md): the fixed newstyle handshake, its options
 * and replies, and the transmission phase's requests, replies and flags. Only what pagerd speaks.
 */

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

export const enum Opt {
  EXPORT_NAME = 1,
  ABORT = 2,
  LIST = 3,
  STARTTLS = 5,
  INFO = 6,
  GO = 7,
  STRUCTURED_REPLY = 8,
  LIST_META_CONTEXT = 9,
  SET_META_CONTEXT = 10,
}

const REP_ERR = 0x80000000;
export const enum Rep {
  ACK = 1,
  SERVER = 2,
  INFO = 3,
  META_CONTEXT = 4,
  ERR_UNSUP = REP_ERR + 1,
  ERR_POLICY = REP_ERR + 2,
  ERR_INVALID = REP_ERR + 3,
  ERR_UNKNOWN = REP_ERR + 6,
  ERR_TOO_BIG = REP_ERR + 9,
}

export const enum Info {
  EXPORT = 0,
  NAME = 1,
  DESCRIPTION = 2,
  BLOCK_SIZE = 3,
}

/** Transmission flags of an export. */
export const enum TxFlag {
  HAS_FLAGS = 1 << 0,
  READ_ONLY = 1 << 1,
  SEND_FLUSH = 1 << 2,
  SEND_FUA = 1 << 3,
  SEND_TRIM = 1 << 5,
  SEND_WRITE_ZEROES = 1 << 6,
  SEND_DF = 1 << 7,
  CAN_MULTI_CONN = 1 << 8,
  SEND_CACHE = 1 << 10,
}

export const enum Cmd {
  READ = 0,
  WRITE = 1,
  DISC = 2,
  FLUSH = 3,
  TRIM = 4,
  CACHE = 5,
  WRITE_ZEROES = 6,
  BLOCK_STATUS = 7,
}

export const enum CmdFlag {
  FUA = 1 << 0,
  NO_HOLE = 1 << 1,
  DF = 1 << 2,
  REQ_ONE = 1 << 3,
  FAST_ZERO = 1 << 4,
}

export const enum ReplyType {
  NONE = 0,
  OFFSET_DATA = 1,
  OFFSET_HOLE = 2,
  BLOCK_STATUS = 5,
  ERROR = (1 << 15) + 1,
}
export const REPLY_FLAG_DONE = 1;

/** base:allocation extent flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

/** The one metadata context served, and the id it is given. */
export const BASE_ALLOCATION = 'base:allocation';
export const BASE_ALLOCATION_ID = 1;

/** Errors as NBD numbers them (Linux errno values; anything else goes as EINVAL or EIO). */
export const enum NbdErrno {
  EPERM = 1,
  EIO = 5,
  ENOMEM = 12,
  EINVAL = 22,
  ENOSPC = 28,
  EOVERFLOW = 75,
  ENOTSUP = 95,
  ESHUTDOWN = 108,
}

/** Longest string (export name, context query) taken in an option; longer is NBD_REP_ERR_TOO_BIG. */
export const MAX_STRING = 4096;
/** Longest option payload read at all; longer closes the connection (never allocated). */
export const MAX_OPTION_BYTES = 64 * 1024;

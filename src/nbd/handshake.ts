import type { Socket } from 'node:net';
import type { NbdExport } from './nbd-export.js';
import {
  BASE_ALLOCATION,
  BASE_ALLOCATION_ID,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  Info,
  MAX_OPTION_BYTES,
  MAX_STRING,
  NBDMAGIC,
  Opt,
  OPTION_REPLY_MAGIC,
  Rep,
} from './protocol.js';
import { drained, type SocketReader } from './socket-reader.js';

/** What the handshake settled: the export, and how replies are sent. */
export interface Negotiated {
  export: NbdExport;
  /** Structured replies (NBD_OPT_STRUCTURED_REPLY). */
  structured: boolean;
  /** base:allocation was selected for this export (NBD_OPT_SET_META_CONTEXT). */
  baseAllocation: boolean;
}

/** The exports one peer may use. */
export interface ExportCatalog {
  find(name: string): NbdExport | undefined;
  names(): string[];
  /** Preferred and largest request sizes announced (NBD_INFO_BLOCK_SIZE). */
  readonly preferredBlock: number;
  readonly maxBlock: number;
}

/** The handshake broke the protocol: the connection is closed (said in the log). */
export class HandshakeRefused extends Error {}

const NO_EXPORT = 'name an export: a segment vmid in decimal (pagerctl segments list shows those you may use)';

/**
 * The fixed newstyle handshake (NBD proto.md, "Option haggling"), server side. Answers what was
 * negotiated once the client has chosen an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME), or
 * undefined when it aborted; throws HandshakeRefused when the client broke the protocol.
 */
export async function negotiate(socket: Socket, reader: SocketReader, catalog: ExportCatalog): Promise<Negotiated | undefined> {
  const greeting = Buffer.alloc(18);
  greeting.writeBigUInt64BE(NBDMAGIC, 0);
  greeting.writeBigUInt64BE(IHAVEOPT, 8);
  greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  socket.write(greeting);
  const clientFlags = (await reader.read(4)).readUInt32BE(0);
  if ((clientFlags & FLAG_C_FIXED_NEWSTYLE) === 0) throw new HandshakeRefused('the client does not speak the fixed newstyle handshake');
  if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) !== 0) throw new HandshakeRefused(`unknown client flags 0x${clientFlags.toString(16)}`);
  const noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;
  let structured = false;
  /** The export name base:allocation was selected for, if any. */
  let contextFor: string | undefined;

  const reply = (opt: number, type: number, data: Uint8Array = Buffer.alloc(0)): void => {
    const head = Buffer.alloc(20);
    head.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
    head.writeUInt32BE(opt, 8);
    head.writeUInt32BE(type, 12);
    head.writeUInt32BE(data.length, 16);
    socket.write(Buffer.concat([head, data]));
  };
  const error = (opt: number, type: number, message: string): void => reply(opt, type, Buffer.from(message));
  /** The export `name` names, or undefined with the error answered. */
  const exportNamed = (opt: number, name: string): NbdExport | undefined => {
    if (name.length > MAX_STRING) return void error(opt, Rep.ERR_TOO_BIG, 'export name too long');
    const found = name === '' ? undefined : catalog.find(name);
    if (found === undefined) error(opt, Rep.ERR_UNKNOWN, name === '' ? `no default export: ${NO_EXPORT}` : `no export ${JSON.stringify(name)} you may use: ${NO_EXPORT}`);
    return found;
  };

  for (;;) {
    // A client that sends options without reading the replies is read no further until it does.
    if (socket.writableLength > MAX_OPTION_BYTES) await drained(socket);
    const head = await reader.read(16);
    if (head.readBigUInt64BE(0) !== IHAVEOPT) throw new HandshakeRefused('an option without the IHAVEOPT magic');
    const opt = head.readUInt32BE(8);
    const length = head.readUInt32BE(12);
    if (length > MAX_OPTION_BYTES) throw new HandshakeRefused(`an option of ${length} bytes`);
    const data = await reader.read(length);

    switch (opt) {
      case Opt.EXPORT_NAME: {
        const found = catalog.find(data.toString('utf8'));
        // No way to say why in this old option: the protocol has the server close the connection.
        if (found === undefined) throw new HandshakeRefused(`NBD_OPT_EXPORT_NAME of an unknown export: ${NO_EXPORT}`);
        // Size and flags, then 124 zero bytes unless the client said it does without them.
        socket.write(noZeroes ? sizeAndFlags(found, structured) : Buffer.concat([sizeAndFlags(found, structured), Buffer.alloc(124)]));
        return { export: found, structured, baseAllocation: contextFor === String(found.vmid) && structured };
      }
      case Opt.ABORT:
        reply(opt, Rep.ACK);
        return undefined;
      case Opt.LIST:
        if (length !== 0) {
          error(opt, Rep.ERR_INVALID, 'NBD_OPT_LIST takes no data');
          break;
        }
        for (const name of catalog.names()) {
          const entry = Buffer.alloc(4 + Buffer.byteLength(name));
          entry.writeUInt32BE(Buffer.byteLength(name), 0);
          entry.write(name, 4);
          reply(opt, Rep.SERVER, entry);
        }
        reply(opt, Rep.ACK);
        break;
      case Opt.STARTTLS:
        error(opt, Rep.ERR_POLICY, 'pagerd serves NBD on a local Unix socket only, without TLS');
        break;
      case Opt.STRUCTURED_REPLY:
        if (length !== 0) error(opt, Rep.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        else if (structured) error(opt, Rep.ERR_INVALID, 'structured replies are already on');
        else {
          structured = true;
          reply(opt, Rep.ACK);
        }
        break;
      case Opt.INFO:
      case Opt.GO: {
        const request = parseInfoRequest(data);
        if (request === undefined) {
          error(opt, Rep.ERR_INVALID, 'a malformed NBD_OPT_INFO or NBD_OPT_GO');
          break;
        }
        const found = exportNamed(opt, request.name);
        if (found === undefined) break;
        reply(opt, Rep.INFO, Buffer.concat([u16(Info.EXPORT), sizeAndFlags(found, structured)]));
        if (request.infos.includes(Info.NAME)) reply(opt, Rep.INFO, infoString(Info.NAME, request.name));
        if (request.infos.includes(Info.DESCRIPTION)) reply(opt, Rep.INFO, infoString(Info.DESCRIPTION, found.description));
        const sizes = Buffer.alloc(14);
        sizes.writeUInt16BE(Info.BLOCK_SIZE, 0);
        sizes.writeUInt32BE(1, 2);
        sizes.writeUInt32BE(catalog.preferredBlock, 6);
        sizes.writeUInt32BE(catalog.maxBlock, 10);
        reply(opt, Rep.INFO, sizes);
        reply(opt, Rep.ACK);
        if (opt === Opt.GO) return { export: found, structured, baseAllocation: structured && contextFor === request.name };
        break;
      }
      case Opt.LIST_META_CONTEXT:
      case Opt.SET_META_CONTEXT: {
        const request = parseContextRequest(data);
        if (opt === Opt.SET_META_CONTEXT) contextFor = undefined; // a failed SET selects nothing
        if (request === undefined) {
          error(opt, Rep.ERR_INVALID, 'a malformed meta context request');
          break;
        }
        if (opt === Opt.SET_META_CONTEXT && !structured) {
          error(opt, Rep.ERR_INVALID, 'meta contexts need structured replies first (NBD_OPT_STRUCTURED_REPLY)');
          break;
        }
        if (request.queries.some((q) => q.length > MAX_STRING)) {
          error(opt, Rep.ERR_TOO_BIG, 'a query too long');
          break;
        }
        if (exportNamed(opt, request.name) === undefined) break;
        const matches =
          opt === Opt.SET_META_CONTEXT
            ? request.queries.includes(BASE_ALLOCATION)
            : request.queries.length === 0 || request.queries.some((q) => q === BASE_ALLOCATION || q === 'base:');
        if (opt === Opt.SET_META_CONTEXT) contextFor = matches ? request.name : undefined;
        if (matches) {
          const context = Buffer.alloc(4 + BASE_ALLOCATION.length);
          context.writeUInt32BE(opt === Opt.SET_META_CONTEXT ? BASE_ALLOCATION_ID : 0, 0);
          context.write(BASE_ALLOCATION, 4);
          reply(opt, Rep.META_CONTEXT, context);
        }
        reply(opt, Rep.ACK);
        break;
      }
      default:
        error(opt, Rep.ERR_UNSUP, `option ${opt} is not supported`);
    }
  }
}

/** An export's size (u64) and transmission flags (u16), as NBD_OPT_EXPORT_NAME and NBD_INFO_EXPORT send them. */
function sizeAndFlags(found: NbdExport, structured: boolean): Buffer {
  const out = Buffer.alloc(10);
  out.writeBigUInt64BE(BigInt(found.size), 0);
  out.writeUInt16BE(found.transmissionFlags(structured), 8);
  return out;
}

function u16(n: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(n, 0);
  return out;
}

function infoString(type: number, text: string): Buffer {
  return Buffer.concat([u16(type), Buffer.from(text)]);
}

/** NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 count, count × u16 info types. */
function parseInfoRequest(data: Buffer): { name: string; infos: number[] } | undefined {
  if (data.length < 6) return undefined;
  const nameLength = data.readUInt32BE(0);
  if (4 + nameLength + 2 > data.length) return undefined;
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 4 + nameLength + 2 + 2 * count) return undefined;
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(6 + nameLength + 2 * i));
  return { name: data.toString('utf8', 4, 4 + nameLength), infos };
}

/** Meta context request data: u32 name length, name, u32 count, count × (u32 length, query). */
function parseContextRequest(data: Buffer): { name: string; queries: string[] } | undefined {
  if (data.length < 8) return undefined;
  const nameLength = data.readUInt32BE(0);
  if (4 + nameLength + 4 > data.length) return undefined;
  const name = data.toString('utf8', 4, 4 + nameLength);
  const count = data.readUInt32BE(4 + nameLength);
  const queries: string[] = [];
  let at = 8 + nameLength;
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return undefined;
    const length = data.readUInt32BE(at);
    if (at + 4 + length > data.length) return undefined;
    queries.push(data.toString('utf8', at + 4, at + 4 + length));
    at += 4 + length;
  }
  return at === data.length ? { name, queries } : undefined;
}

import { describe, expect, it } from 'vitest';
import {
  DecodeError,
  decodeHello,
  decodeReply,
  decodeRequest,
  decodeWelcome,
  encodeHello,
  encodeReplyFrame,
  encodeReplyParts,
  encodeStrategyDoneFrame,
  strategyDoneFrameParts,
  encodeRequest,
  encodeRequestFrame,
  encodeWelcome,
  PROTOCOL_VERSION,
  decodeStrategyIo,
  encodeStrategyWriteByReference,
  strategyIoFrameParts,
} from '../../src/protocol/codec.js';
import { FrameDecoder, FrameTooLargeError, encodeFrame } from '../../src/protocol/frame.js';
import { OPERATIONS } from '../../src/protocol/operations.js';

describe('framing', () => {
  it('reassembles frames split anywhere and answers several from one chunk', () => {
    const a = encodeFrame(Buffer.from('hello'));
    const b = encodeFrame(Buffer.from('world!'));
    const stream = Buffer.concat([a, b]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder(1024);
      const frames = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      expect(frames.map((f) => f.toString())).toEqual(['hello', 'world!']);
      expect(d.pending).toBe(0);
    }
  });

  it('reassembles frames from a stream cut into pieces of any size', () => {
    const payloads = [Buffer.alloc(0), Buffer.from('a'), Buffer.alloc(5000, 3), Buffer.from('tail')];
    const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
    for (const piece of [1, 2, 3, 5, 7, 4096, 4099, stream.length]) {
      const d = new FrameDecoder(8192);
      const frames: Buffer[] = [];
      for (let at = 0; at < stream.length; at += piece) frames.push(...d.push(stream.subarray(at, at + piece)));
      expect(frames).toEqual(payloads);
      expect(d.pending).toBe(0);
    }
  });

  it('copies every frame out of chunks the caller reuses (a socket reading into one buffer)', () => {
    const payloads = [Buffer.from('a'), Buffer.alloc(5000, 3), Buffer.alloc(0), Buffer.from('tail')];
    const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
    for (const piece of [1, 3, 4096, stream.length]) {
      const d = new FrameDecoder(8192, { reusedChunks: true });
      const scratch = Buffer.alloc(piece);
      const frames: Buffer[] = [];
      for (let at = 0; at < stream.length; at += piece) {
        const n = stream.copy(scratch, 0, at, at + piece);
        frames.push(...d.push(scratch.subarray(0, n)));
        scratch.fill(0xee); // the next read overwrites the buffer
      }
      expect(frames).toEqual(payloads);
      expect(d.pending).toBe(0);
    }
  });

  it('lets the rest of a large frame be read straight into it, and answers it when complete', () => {
    const big = Buffer.alloc(40_000, 9);
    const stream = Buffer.concat([encodeFrame(big), encodeFrame(Buffer.from('next'))]);
    const d = new FrameDecoder(65536, { reusedChunks: true });
    expect(d.readTarget(16384)).toBeUndefined(); // no frame begun
    expect(d.push(stream.subarray(0, 1000))).toEqual([]);
    const target = d.readTarget(16384)!;
    expect(target.length).toBe(4 + 40_000 - 1000);
    const n = stream.copy(target, 0, 1000, 30_000); // a read that lands in the frame
    expect(d.received(n)).toEqual([]);
    expect(d.readTarget(16384)).toBeUndefined(); // 14,004 bytes left: below the minimum
    const frames = d.push(stream.subarray(30_000));
    expect(frames).toEqual([big, Buffer.from('next')]);
    expect(() => d.received(1)).toThrow(RangeError);
  });

  it('refuses a length above the maximum before buffering it', () => {
    const d = new FrameDecoder(16);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(17, 0);
    expect(() => d.push(head)).toThrow(FrameTooLargeError);
    const split = new FrameDecoder(16);
    expect(split.push(head.subarray(0, 3))).toEqual([]);
    expect(() => split.push(head.subarray(3))).toThrow(FrameTooLargeError);
  });
});

describe('strategy requests', () => {
  it('carry a write\'s pages as they are, pages adjacent in memory as one part, and decode to the same bytes', () => {
    const frames = new Uint8Array(new SharedArrayBuffer(8 * 16));
    frames.forEach((_, i) => (frames[i] = i));
    const page = (f: number): Uint8Array => frames.subarray(f * 16, (f + 1) * 16);
    const pages = [page(2), page(3), page(4), page(0), page(6), page(7)];
    const parts = strategyIoFrameParts({ id: 7, device: 1, op: 'write', vmid: 3, page: 10, npages: pages.length }, pages);
    expect(parts.slice(1).map((p) => [p.byteOffset, p.length])).toEqual([[32, 48], [0, 16], [96, 32]]);
    const wire = Buffer.concat(parts);
    expect(wire.readUInt32BE(0)).toBe(wire.length - 4);
    const io = decodeStrategyIo(wire.subarray(4));
    expect(io).toMatchObject({ id: 7, device: 1, op: 'write', vmid: 3, page: 10, npages: 6 });
    expect([...io.data]).toEqual(pages.flatMap((p) => [...p]));
  });

  it('carry a write by frame reference as the frame numbers, decoded as `frames` with no bytes; a count that does not match npages is refused', () => {
    const wire = encodeStrategyWriteByReference({ id: 8, device: 2, vmid: 4, page: 20, npages: 3 }, [5, 0xfffffffe, 6]);
    expect(wire.readUInt32BE(0)).toBe(wire.length - 4);
    const io = decodeStrategyIo(wire.subarray(4));
    expect(io).toMatchObject({ id: 8, device: 2, op: 'write', vmid: 4, page: 20, npages: 3, frames: [5, 0xfffffffe, 6] });
    expect(io.data).toHaveLength(0);
    const short = encodeStrategyWriteByReference({ id: 9, device: 2, vmid: 4, page: 20, npages: 3 }, [5, 6]);
    expect(() => decodeStrategyIo(short.subarray(4))).toThrow(/names 2 frames/);
  });
});

describe('replies in parts', () => {
  it('send a read\'s data after the frame head, not copied, and go on the wire as the whole frame does', () => {
    const data = Buffer.alloc(4096, 9);
    const reply = { id: 5, results: [4096, data] };
    const parts = encodeReplyParts(reply);
    expect(parts).toHaveLength(2);
    expect(parts[1]).toBe(data);
    expect(Buffer.concat(parts).equals(encodeReplyFrame(reply))).toBe(true);
    const small = { id: 6, results: [1023, Buffer.alloc(1023, 1)] };
    expect(encodeReplyParts(small)).toEqual([encodeReplyFrame(small)]);
    const least = { id: 6, results: [1024, Buffer.alloc(1024, 1)] };
    expect(encodeReplyParts(least)).toHaveLength(2);
    const failed = { id: 7, error: { code: 'EIO', reason: 'io-error', detail: 'x' }, results: [0, Buffer.alloc(2048)] };
    expect(Buffer.concat(encodeReplyParts(failed)).equals(encodeReplyFrame(failed))).toBe(true);
  });

  it('send a strategy\'s read data after its answer\'s head, and its errors whole', () => {
    const done = { id: 9, errno: 0, data: Buffer.alloc(8192, 4) };
    const parts = strategyDoneFrameParts(done);
    expect(parts[1]).toBe(done.data);
    expect(Buffer.concat(parts).equals(encodeStrategyDoneFrame(done))).toBe(true);
    const error = { id: 10, errno: 116, data: new Uint8Array(0) };
    expect(strategyDoneFrameParts(error)).toEqual([encodeStrategyDoneFrame(error)]);
  });
});

describe('messages', () => {
  it('round-trips hello, welcome, requests and replies', () => {
    expect(decodeHello(encodeHello(1))).toBe(1);
    expect(decodeWelcome(encodeWelcome(4096, 1 << 21))).toEqual({ version: PROTOCOL_VERSION, pageSize: 4096, maxPayload: 1 << 21, flags: 0 });
    expect(decodeWelcome(encodeWelcome(4096, 1 << 21, 1)).flags).toBe(1);
    const data = Uint8Array.from([1, 2, 3]);
    const req = { id: 77, op: 'vmMove' as const, args: [1, -0.5, 4096, 0, 0, 4096, 0, 4096, data] };
    const frame = encodeRequestFrame(req);
    expect(frame.readUInt32BE(0)).toBe(frame.length - 4);
    expect(frame.subarray(4)).toEqual(encodeRequest(req));
    const back = decodeRequest(frame.subarray(4));
    expect(back).toMatchObject({ id: 77, op: 'vmMove' });
    expect(back.args.slice(0, 8)).toEqual([1, -0.5, 4096, 0, 0, 4096, 0, 4096]);
    expect([...(back.args[8] as Uint8Array)]).toEqual([1, 2, 3]);
    const reply = encodeReplyFrame({ id: 77, error: { code: 'EINVAL', reason: 'bad-rw', detail: 'ü' }, results: [3, 'x', data] });
    expect(decodeReply(reply.subarray(4))).toMatchObject({ id: 77, error: { code: 'EINVAL', reason: 'bad-rw', detail: 'ü' }, results: [3, 'x', Buffer.from(data)] });
  });

  it('refuses unknown operations, wrong kinds, wrong counts, truncation and trailing bytes, naming the id when it can', () => {
    const good = encodeRequest({ id: 9, op: 'vmQpages', args: [1] });
    const unknown = Buffer.from(good);
    unknown.writeUInt16LE(999, 5);
    expect(() => decodeRequest(unknown)).toThrow(expect.objectContaining({ id: 9, message: expect.stringMatching(/unknown operation/) }));
    const wrongKind = encodeRequest({ id: 9, op: 'vmQpages', args: ['1'] as never });
    expect(() => decodeRequest(wrongKind)).toThrow(DecodeError);
    const wrongCount = Buffer.from(good);
    wrongCount[7] = 2;
    expect(() => decodeRequest(wrongCount)).toThrow(/takes 1 arguments/);
    expect(() => decodeRequest(good.subarray(0, good.length - 1))).toThrow(/truncated/);
    expect(() => decodeRequest(Buffer.concat([good, Buffer.from([0])]))).toThrow(/after the end/);
    expect(() => decodeRequest(good.subarray(0, 3))).toThrow(expect.objectContaining({ id: undefined }));
  });

  it('gives every operation a distinct code', () => {
    const codes = Object.values(OPERATIONS).map((o) => o.code);
    expect(new Set(codes).size).toBe(codes.length);
  });
});

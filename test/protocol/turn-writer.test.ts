import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { TurnWriter } from '../../src/protocol/turn-writer.js';

/** A stream that records each batch of bytes it is handed (one writev or write: one syscall on a socket). */
function recordingStream(): { stream: Writable; batches: number[][] } {
  const batches: number[][] = [];
  const stream = new Writable({
    writev(chunks, callback) {
      batches.push(chunks.map((c) => (c.chunk as Buffer).length));
      callback();
    },
    write(chunk: Buffer, _encoding, callback) {
      batches.push([chunk.length]);
      callback();
    },
  });
  return { stream, batches };
}

const tick = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));

describe('TurnWriter', () => {
  it('hands on the frames of one turn together, at its end', async () => {
    const { stream, batches } = recordingStream();
    const writer = new TurnWriter(stream);
    writer.write(Buffer.alloc(10));
    writer.write(Buffer.alloc(20));
    writer.write(Buffer.alloc(30));
    expect(batches).toEqual([]);
    await tick();
    expect(batches).toEqual([[10, 20, 30]]);
  });

  it('hands on what it holds once it holds flushBytes, without waiting for the turn to end', async () => {
    const { stream, batches } = recordingStream();
    const writer = new TurnWriter(stream, 100);
    writer.write(Buffer.alloc(60));
    writer.write(Buffer.alloc(60));
    writer.write(Buffer.alloc(5));
    expect(batches).toEqual([[60, 60]]);
    await tick();
    expect(batches).toEqual([[60, 60], [5]]);
  });

  it('flush hands on what it holds at once; the frames written after it still wait for the turn to end', async () => {
    const { stream, batches } = recordingStream();
    const writer = new TurnWriter(stream);
    writer.write(Buffer.alloc(10));
    writer.flush();
    expect(batches).toEqual([[10]]);
    writer.flush(); // nothing held: no empty batch
    writer.write(Buffer.alloc(20));
    writer.write(Buffer.alloc(30));
    expect(batches).toEqual([[10]]);
    await tick();
    expect(batches).toEqual([[10], [20, 30]]);
  });

  it('calls `written` once the stream has taken the frame', async () => {
    const { stream } = recordingStream();
    const writer = new TurnWriter(stream);
    let written = false;
    writer.write(Buffer.alloc(10), () => (written = true));
    expect(written).toBe(false);
    await new Promise((resolve) => setImmediate(resolve));
    expect(written).toBe(true);
  });
});

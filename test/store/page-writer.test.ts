import { describe, expect, it } from 'vitest';
import { openDevice } from '../../src/store/device.js';
import { PageWriter, type WriteCycleHost } from '../../src/store/page-writer.js';
import { storeDir } from '../support/store-files.js';

const PAGE = 4096;

/** A writer over a real file, whose host's commit throws `bug` (an unexpected exception, not a refusal). */
async function writerWithBug(bug: Error) {
  const device = await openDevice(`${storeDir()}/backing`, { createBytes: 64 * PAGE, preallocate: false });
  const crashed: unknown[] = [];
  let next = 0;
  const host: WriteCycleHost = {
    device,
    pageSize: PAGE,
    maxBatchPages: 4,
    dataOffset: PAGE,
    takeSlots: (n) => Array.from({ length: n }, () => next++),
    startCycle: async () => ({ number: 1, position: 1024, bytes: new Uint8Array(512) }),
    writable: async () => true,
    giveBackSlots: () => {
      throw bug; // a cycle fails, and so does its clean-up: the drain loop itself throws
    },
    commit: () => {
      throw bug;
    },
    synced: () => undefined,
    notSynced: () => undefined,
    failed: () => undefined,
    crashed: (err) => crashed.push(err),
  };
  return { writer: new PageWriter(host), crashed, device };
}

describe('the page writer', () => {
  it('settles every batch it holds, goes idle and reports the crash when its loop throws', async () => {
    const bug = new Error('a bug in the commit path');
    const { writer, crashed, device } = await writerWithBug(bug);
    const batches = Array.from({ length: 6 }, (_, i) => writer.submit({ writes: [{ vmid: 1, pno: i, data: new Uint8Array(PAGE).fill(i) }], stamp: i + 1 }));
    const outcomes = await Promise.allSettled(batches.map((b) => b.complete));
    expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
    await Promise.all(batches.map((b) => b.captured));
    await writer.idle();
    expect(crashed).toEqual([bug]);
    expect(writer.progressing(1)).toBe(true); // idle again
    await device.close();
  });
});

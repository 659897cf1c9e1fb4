import { describe, expect, it } from 'vitest';
import { FRAME_RECORD_BYTES, createFrameTable } from '../../src/vm/frame-layout.js';
import { IllegalTransitionError, PageState, STATE_NAMES, TRANSITIONS, isLegalTransition } from '../../src/vm/page-state.js';
import { PageTable } from '../../src/vm/page-table.js';
import { testEngine } from '../support/engine.js';

describe('page states', () => {
  it('has a transition row and a name for every state', () => {
    const states = Object.values(PageState);
    expect(TRANSITIONS).toHaveLength(states.length);
    expect(STATE_NAMES).toHaveLength(states.length);
  });

  it('never lets a page skip page-out on its way from modified to clean', () => {
    expect(isLegalTransition(PageState.MODIFIED, PageState.CLEAN)).toBe(false);
    expect(isLegalTransition(PageState.ABSENT, PageState.CLEAN)).toBe(false);
    expect(isLegalTransition(PageState.PAGE_IN, PageState.MODIFIED)).toBe(false);
  });

  it('fails loudly on an illegal transition, naming both states', async () => {
    const { vmm } = await testEngine();
    expect(() => vmm.transition(0, PageState.CLEAN)).toThrow(IllegalTransitionError);
    expect(() => vmm.transition(0, PageState.PAGE_OUT)).toThrow('absent -> page-out');
  });
});

describe('frame table layout', () => {
  it('keeps the engine bookkeeping at 32 bytes per frame, fields aligned in one shared buffer', () => {
    expect(FRAME_RECORD_BYTES).toBe(32);
    const { buffer, table } = createFrameTable(3);
    expect(buffer.byteLength).toBe(96);
    table.pageOutStartedMs[2] = 1.5;
    table.flags[2] = 7;
    expect(table.pageOutStartedMs[2]).toBe(1.5);
    expect(table.state[2]).toBe(0);
  });
});

describe('page table', () => {
  it('stays sparse: chunks exist only while one of their pages has a frame', () => {
    const pt = new PageTable();
    pt.set(2 ** 32 - 1, 7);
    pt.set(5, 1);
    expect(pt.get(2 ** 32 - 1)).toBe(7);
    expect(pt.get(6)).toBe(-1);
    expect(pt.chunkBytes).toBe(2 * 4096);
    const seen: number[] = [];
    pt.forEachInRange(0, 2 ** 32, (pno) => seen.push(pno));
    expect(seen).toEqual([5, 2 ** 32 - 1]);
    pt.delete(5);
    pt.delete(2 ** 32 - 1);
    expect(pt.chunkBytes).toBe(0);
    expect(pt.size).toBe(0);
  });

  it('refuses to link a page twice or unlink a page without a frame', () => {
    const pt = new PageTable();
    pt.set(1, 0);
    expect(() => pt.set(1, 2)).toThrow(/page 1 already has frame 0/);
    expect(() => pt.delete(2)).toThrow(/page 2 has no frame/);
  });
});

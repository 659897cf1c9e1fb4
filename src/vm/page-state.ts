/**
 * Page states and the legal moves between them, as data (XNU's habit: one state field, questions
 * answered by tables indexed by the state).
 *
 * A frame's state is the state of the page it holds; ABSENT means the frame holds no page and sits
 * on the free list. Whether a page in page-out was modified again is a frame flag (REMODIFIED), not
 * a state: the frame is still under write.
 */

export const PageState = {
  ABSENT: 0,
  PAGE_IN: 1,
  CLEAN: 2,
  MODIFIED: 3,
  PAGE_OUT: 4,
} as const;
export type PageState = (typeof PageState)[keyof typeof PageState];

export const STATE_NAMES = ['absent', 'page-in', 'resident clean', 'resident modified', 'page-out'] as const;

const { ABSENT, PAGE_IN, CLEAN, MODIFIED, PAGE_OUT } = PageState;

/** TRANSITIONS[from] lists the states a frame may move to from `from`. */
export const TRANSITIONS: readonly (readonly PageState[])[] = [
  /* ABSENT   */ [PAGE_IN, MODIFIED], // fault with page-in; page made without page-in (vm_makep, full-page write)
  /* PAGE_IN  */ [CLEAN, ABSENT], // read done; read failed or discarded at completion
  /* CLEAN    */ [MODIFIED, ABSENT], // written; stolen, released, invalidated or flushed
  /* MODIFIED */ [PAGE_OUT, ABSENT], // page-out starts; released, invalidated or deleted without writing
  /* PAGE_OUT */ [CLEAN, MODIFIED, ABSENT], // done; done but modified again or failed; discarded or freed at completion
];

/** The page's bytes in the frame are valid and may be read or written (a page-out reads them too). */
export const HOLDS_DATA: readonly boolean[] = [false, false, true, true, true];
/** The frame is under device I/O. */
export const IN_IO: readonly boolean[] = [false, true, false, false, true];
/** The frame may be taken by the clock hand at once (its page is on the store or all zeros). */
export const STEALABLE: readonly boolean[] = [false, false, true, false, false];

export class IllegalTransitionError extends Error {
  constructor(frame: number, from: PageState, to: PageState) {
    super(`illegal page state transition on frame ${frame}: ${STATE_NAMES[from]} -> ${STATE_NAMES[to]}`);
    this.name = 'IllegalTransitionError';
  }
}

export function isLegalTransition(from: PageState, to: PageState): boolean {
  return TRANSITIONS[from].includes(to);
}

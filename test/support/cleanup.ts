import { afterAll } from 'vitest';
import { killTracked } from './children.js';
import { removeStoreDirs } from './store-files.js';

// Every test file, once it ends (after its own hooks): the processes it started and left running
// (a test that failed midway) are killed, and the store directories it made removed.
afterAll(() => {
  killTracked();
  removeStoreDirs();
});

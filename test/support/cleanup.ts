import { afterAll } from 'vitest';
import { removeStoreDirs } from './store-files.js';

// Every test file: the store directories it made go when it ends.
afterAll(removeStoreDirs);

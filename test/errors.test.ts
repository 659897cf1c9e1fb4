import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRNO, PagerError, REASONS, type Reason } from '../src/errors.js';

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');

describe('error registry', () => {
  it('documents every code with its errno in docs/errors.md', () => {
    for (const [code, errno] of Object.entries(ERRNO)) {
      expect(doc, `code ${code}`).toMatch(new RegExp(`\\| \`${code}\` \\| ${errno} \\|`));
    }
  });

  it('documents every reason under its code in docs/errors.md', () => {
    for (const [reason, { code }] of Object.entries(REASONS)) {
      expect(doc, `reason ${reason}`).toMatch(new RegExp(`\\| \`${reason}\` \\| \`${code}\` \\|`));
    }
  });

  it('documents no reason the registry lacks', () => {
    const documented = [...doc.matchAll(/^\| `([a-z-]+)` \| `E[A-Z]+` \|/gm)].map((m) => m[1]);
    expect(documented.filter((r) => !(r in REASONS))).toEqual([]);
  });

  it('builds errors carrying code, errno and reason', () => {
    const err = new PagerError('io-region');
    expect(err).toBeInstanceOf(Error);
    expect({ code: err.code, errno: err.errno, reason: err.reason }).toEqual({ code: 'EINVAL', errno: 22, reason: 'io-region' });
    const reasons = Object.keys(REASONS) as Reason[];
    expect(new Set(reasons.map((r) => new PagerError(r).reason)).size).toBe(reasons.length);
  });
});

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const GENERATE = join(import.meta.dirname, '../../dist/src/cli/generate-man.js');

describe('man pages', () => {
  it('docs/man/pagerd.8 and pagerctl.8 are what help2man makes of the commands\' --help now (.ci/run installs help2man)', () => {
    const run = spawnSync(process.execPath, [GENERATE, '--check'], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});

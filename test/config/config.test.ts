import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generatedDefaultConfig, generatedSchema } from '../../src/config/generate.js';
import { ConfigError, loadConfig } from '../../src/config/load-config.js';
import { TUNABLES, envName } from '../../src/config/tunables.js';
import { storeDir } from '../support/store-files.js';

const configDir = join(import.meta.dirname, '../../config');

describe('configuration', () => {
  it('ships a default config and schema generated from the one declaration of tunables', () => {
    expect(readFileSync(join(configDir, 'pagerd.default.json'), 'utf8')).toBe(generatedDefaultConfig());
    expect(readFileSync(join(configDir, 'pagerd.schema.json'), 'utf8')).toBe(generatedSchema());
  });

  it('declares a unit and a description for every tunable', () => {
    for (const [key, t] of Object.entries(TUNABLES)) {
      expect(t.unit, key).not.toBe('');
      expect(t.description.length, key).toBeGreaterThan(10);
    }
  });

  it('accepts the shipped default file as it is', () => {
    expect(loadConfig({ file: join(configDir, 'pagerd.default.json') })['memory.size']).toBe('256MiB');
  });

  it('applies file < environment < flags', () => {
    const file = join(storeDir(), 'c.json');
    writeFileSync(file, JSON.stringify({ memory: { size: '8MiB', minFree: 3 }, writeback: { minAgeMs: 10 } }));
    const env = { [envName('memory.minFree')]: '5', PAGERD_WRITEBACK_MIN_AGE_MS: '20' };
    const config = loadConfig({ file, env, flags: { 'writeback.minAgeMs': 30 } });
    expect(config['memory.size']).toBe('8MiB');
    expect(config['memory.minFree']).toBe(5);
    expect(config['writeback.minAgeMs']).toBe(30);
  });

  it('names the key of a bad value', () => {
    expect(() => loadConfig({ env: { PAGERD_STORE_PAGE_SIZE: '8192' } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { PAGERD_STORE_PAGE_SIZE: '8192' } })).toThrow(/store\.pageSize/);
    const file = join(storeDir(), 'bad.json');
    writeFileSync(file, JSON.stringify({ memory: { sise: 1 } }));
    expect(() => loadConfig({ file })).toThrow(/memory/);
  });
});

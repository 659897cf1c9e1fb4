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

  it('reads a fraction from the environment as written in the config file, a leading dot too; an integer stays digits only', () => {
    const config = loadConfig({ env: { PAGERD_STRATEGY_MAX_MODIFIED_SHARE: '.5', PAGERD_STRATEGY_MAX_STRANDED_SHARE: '0.25' } });
    expect(config['strategy.maxModifiedShare']).toBe(0.5);
    expect(config['strategy.maxStrandedShare']).toBe(0.25);
    expect(() => loadConfig({ env: { PAGERD_MEMORY_MIN_FREE: '1e3' } })).toThrow(ConfigError);
  });

  it('names where a bad value came from: a flag is a usage error (64), a variable or the file a configuration error (78)', () => {
    const thrown = (options: Parameters<typeof loadConfig>[0]): ConfigError => {
      try {
        loadConfig(options);
      } catch (err) {
        if (err instanceof ConfigError) return err;
      }
      throw new Error('no ConfigError');
    };
    const fromEnv = thrown({ env: { PAGERD_STORE_PAGE_SIZE: '8192' } });
    expect(fromEnv.message).toMatch(/^PAGERD_STORE_PAGE_SIZE: .*got 8192/);
    expect(fromEnv.exitStatus).toBe(78);
    // A flag outranks the variable, and is named as the flag.
    const fromFlag = thrown({ env: { PAGERD_MEMORY_SIZE: '64MiB' }, flags: { 'memory.size': '1000' }, flagNames: { 'memory.size': '--memory' } });
    expect(fromFlag.message).toMatch(/^--memory: a positive multiple of 4096 bytes/);
    expect(fromFlag.exitStatus).toBe(64);
    // A reply cap below what a socket holds before it reports draining would stall a connection for ever.
    const tinyCap = thrown({ env: { PAGERD_SERVER_MAX_QUEUED_BYTES: '0' } });
    expect(tinyCap.message).toMatch(/^PAGERD_SERVER_MAX_QUEUED_BYTES: at least 64KiB/);
    expect(tinyCap.exitStatus).toBe(78);
    expect(loadConfig({ env: { PAGERD_SERVER_MAX_QUEUED_BYTES: '64KiB' } })['server.maxQueuedBytes']).toBe('64KiB');
    // A frame cap below a 64 KiB page and its head refused every hello (0) or every read (1KiB).
    for (const tiny of ['0', '1KiB', '64KiB']) {
      const tinyFrame = thrown({ env: { PAGERD_SERVER_MAX_PAYLOAD_BYTES: tiny } });
      expect(tinyFrame.message).toMatch(/^PAGERD_SERVER_MAX_PAYLOAD_BYTES: at least 68KiB/);
      expect(tinyFrame.exitStatus).toBe(78);
    }
    expect(loadConfig({ env: { PAGERD_SERVER_MAX_PAYLOAD_BYTES: '68KiB' } })['server.maxPayloadBytes']).toBe('68KiB');
    const file = join(storeDir(), 'bad.json');
    writeFileSync(file, JSON.stringify({ memory: { sise: 1 } }));
    expect(thrown({ file }).message).toMatch(/^config file .*bad\.json: memory/);
    writeFileSync(file, JSON.stringify({ memory: { size: 'lots' } }));
    expect(thrown({ file }).message).toContain(`config file ${file}: memory.size: `);
  });
});

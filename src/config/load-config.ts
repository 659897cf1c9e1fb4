import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { TUNABLES, defaults, envName, fileSchema, flatten, type Config, type TunableKey } from './tunables.js';

/** Where a configured value came from: errors name it, and a bad flag is a usage error (64), not a bad configuration (78). */
export type ConfigSource = { kind: 'default' } | { kind: 'file'; file: string } | { kind: 'env' } | { kind: 'flag'; flag: string };

/** A configuration that cannot be used; the message names the key and where its value came from. */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly source: ConfigSource = { kind: 'default' },
  ) {
    super(message);
    this.name = 'ConfigError';
  }

  /** EX_USAGE for a bad command-line flag, EX_CONFIG for anything else. */
  get exitStatus(): number {
    return this.source.kind === 'flag' ? 64 : 78;
  }
}

const SOURCES = new WeakMap<Config, Record<string, ConfigSource>>();

/** How to name a key's value in an error: the flag, the variable or the file key it came from. */
export function describeSource(key: TunableKey, source: ConfigSource): string {
  switch (source.kind) {
    case 'flag':
      return source.flag;
    case 'env':
      return envName(key);
    case 'file':
      return `${key} in ${source.file}`;
    default:
      return `${key} (default)`;
  }
}

/** A ConfigError about `key` of a loaded configuration, naming where its value came from. */
export function configError(config: Config, key: TunableKey, problem: string): ConfigError {
  const source = SOURCES.get(config)?.[key] ?? { kind: 'default' };
  return new ConfigError(`${describeSource(key, source)}: ${problem}`, source);
}

/** Environment values are text: booleans and numbers are read as such where the tunable wants them. */
function fromEnv(key: TunableKey, text: string): unknown {
  const t = TUNABLES[key].default;
  if (typeof t === 'boolean') return text === '1' || text.toLowerCase() === 'true' ? true : text === '0' || text.toLowerCase() === 'false' ? false : text;
  if (typeof t === 'number' && /^-?(\d+(\.\d+)?|\.\d+)$/.test(text)) return Number(text);
  if (key === 'memory.size' || key === 'store.createBytes' || key === 'server.maxQueuedBytes' || key === 'server.maxQueuedBytesTotal' || key === 'server.maxPayloadBytes') {
    return /^\d+$/.test(text) ? Number(text) : text;
  }
  return text;
}

export interface LoadOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  flags?: Partial<Record<TunableKey, unknown>>;
  /** The command-line flag of each key given in `flags` (for errors); the key itself otherwise. */
  flagNames?: Partial<Record<TunableKey, string>>;
}

/**
 * Builds the configuration: defaults < file < environment (PAGERD_*) < flags, validated once.
 * Throws ConfigError naming the first bad key and where its value came from.
 */
export function loadConfig(options: LoadOptions): Config {
  const merged: Record<string, unknown> = { ...defaults() };
  const sources: Record<string, ConfigSource> = {};
  if (options.file !== undefined) {
    const file = options.file;
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, { kind: 'file', file });
    }
    const checked = fileSchema().safeParse(parsed);
    if (!checked.success) throw new ConfigError(`config file ${file}: ${describe(checked.error)}`, { kind: 'file', file });
    for (const [key, value] of Object.entries(flatten(checked.data as Record<string, unknown>))) {
      merged[key] = value;
      sources[key] = { kind: 'file', file };
    }
  }
  const env = options.env ?? {};
  for (const key of Object.keys(TUNABLES) as TunableKey[]) {
    const text = env[envName(key)];
    if (text === undefined || text === '') continue;
    merged[key] = fromEnv(key, text);
    sources[key] = { kind: 'env' };
  }
  for (const [key, value] of Object.entries(options.flags ?? {})) {
    if (value === undefined) continue;
    merged[key] = value;
    sources[key] = { kind: 'flag', flag: options.flagNames?.[key as TunableKey] ?? key };
  }
  for (const key of Object.keys(TUNABLES) as TunableKey[]) {
    const checked = TUNABLES[key].schema.safeParse(merged[key]);
    const source = sources[key] ?? { kind: 'default' };
    if (!checked.success) throw new ConfigError(`${describeSource(key, source)}: ${describe(checked.error)}, got ${JSON.stringify(merged[key])}`, source);
    merged[key] = checked.data;
  }
  const config = merged as Config;
  SOURCES.set(config, sources);
  return config;
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue.path.join('.');
  return path === '' ? issue.message : `${path}: ${issue.message}`;
}

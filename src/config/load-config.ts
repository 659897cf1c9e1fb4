import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { TUNABLES, defaults, envName, fileSchema, flatten, type Config, type TunableKey } from './tunables.js';

/** A configuration that cannot be used; the message names the key. pagerd exits 78 on it. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Environment values are text: booleans and numbers are read as such where the tunable wants them. */
function fromEnv(key: TunableKey, text: string): unknown {
  const t = TUNABLES[key].default;
  if (typeof t === 'boolean') return text === '1' || text.toLowerCase() === 'true' ? true : text === '0' || text.toLowerCase() === 'false' ? false : text;
  if (typeof t === 'number' && /^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (key === 'memory.size' || key === 'store.createBytes' || key === 'server.maxQueuedBytes' || key === 'server.maxQueuedBytesTotal' || key === 'server.maxPayloadBytes') {
    return /^\d+$/.test(text) ? Number(text) : text;
  }
  return text;
}

/**
 * Builds the configuration: defaults < file < environment (PAGERD_*) < flags, validated once.
 * Throws ConfigError naming the first bad key.
 */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; flags?: Partial<Record<TunableKey, unknown>> }): Config {
  const merged: Record<string, unknown> = { ...defaults() };
  if (options.file !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(options.file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read config file ${options.file}: ${(err as Error).message}`);
    }
    const checked = fileSchema().safeParse(parsed);
    if (!checked.success) throw new ConfigError(`config file ${options.file}: ${describe(checked.error)}`);
    Object.assign(merged, flatten(checked.data as Record<string, unknown>));
  }
  const env = options.env ?? {};
  for (const key of Object.keys(TUNABLES) as TunableKey[]) {
    const text = env[envName(key)];
    if (text !== undefined && text !== '') merged[key] = fromEnv(key, text);
  }
  for (const [key, value] of Object.entries(options.flags ?? {})) if (value !== undefined) merged[key] = value;
  for (const key of Object.keys(TUNABLES) as TunableKey[]) {
    const checked = TUNABLES[key].schema.safeParse(merged[key]);
    if (!checked.success) throw new ConfigError(`${key} (${envName(key)}): ${describe(checked.error)}, got ${JSON.stringify(merged[key])}`);
    merged[key] = checked.data;
  }
  return merged as Config;
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue.path.join('.');
  return path === '' ? issue.message : `${path}: ${issue.message}`;
}

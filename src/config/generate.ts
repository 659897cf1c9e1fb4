import { writeFileSync } from 'node:fs';
import { z } from 'zod';
import { TUNABLES, defaults, fileSchema, nest } from './tunables.js';

/** The shipped default config and its JSON schema, both from the one declaration of tunables. */
export function generatedDefaultConfig(): string {
  return `${JSON.stringify(nest(defaults()), null, 2)}\n`;
}

export function generatedSchema(): string {
  const schema = z.toJSONSchema(fileSchema()) as Record<string, unknown>;
  return `${JSON.stringify({ title: 'pagerd configuration', ...schema }, null, 2)}\n`;
}

export function tunablesTable(): string {
  return Object.entries(TUNABLES)
    .map(([key, t]) => `| \`${key}\` | ${t.unit} | \`${JSON.stringify(t.default)}\` | ${t.description} |`)
    .join('\n');
}

if (process.argv[1]?.endsWith('generate.js')) {
  const root = new URL('../../../config/', import.meta.url);
  writeFileSync(new URL('pagerd.default.json', root), generatedDefaultConfig());
  writeFileSync(new URL('pagerd.schema.json', root), generatedSchema());
  console.log('wrote config/pagerd.default.json and config/pagerd.schema.json');
}

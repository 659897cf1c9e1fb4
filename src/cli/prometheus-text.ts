/** A metric family of the Prometheus text format: its HELP, its TYPE, and every sample line under it. */
export interface MetricFamily {
  name: string;
  help: string;
  type: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/**
 * Parses the text exposition format (version 0.0.4) as pagerd writes it. A sample belongs to the
 * family declared above it when its name starts with the family's (a histogram's _bucket, _sum
 * and _count lines included), else to a family of its own name.
 */
export function parsePrometheusText(text: string): MetricFamily[] {
  const families: MetricFamily[] = [];
  const byName = new Map<string, MetricFamily>();
  const family = (name: string): MetricFamily => {
    let f = byName.get(name);
    if (f === undefined) {
      f = { name, help: '', type: 'untyped', samples: [] };
      byName.set(name, f);
      families.push(f);
    }
    return f;
  };
  let current: MetricFamily | undefined;
  for (const line of text.split('\n')) {
    const comment = /^#\s+(HELP|TYPE)\s+(\S+)\s?(.*)$/.exec(line);
    if (comment !== null) {
      const f = (current = family(comment[2]));
      if (comment[1] === 'HELP') f.help = comment[3].replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      else f.type = comment[3];
      continue;
    }
    const sample = SAMPLE.exec(line);
    if (sample === null) continue;
    const [, name, labelText = '', value] = sample;
    const labels: Record<string, string> = {};
    for (const [, key, v] of labelText.matchAll(LABEL)) labels[key] = v.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    const owner = current !== undefined && (name === current.name || name.startsWith(`${current.name}_`)) ? current : family(name);
    owner.samples.push({ name, labels, value: Number(value) });
  }
  return families;
}

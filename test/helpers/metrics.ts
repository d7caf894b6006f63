/**
 * Reading Prometheus text exposition in tests: the value of one series,
 * picked by name and a subset of its labels (the sum when several match, as
 * a dashboard's `sum` would), or 0 when none exists yet.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const series of parseSeries(text)) {
    if (series.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => series.labels[k] === v)) total += series.value;
  }
  return total;
}

export function hasSeries(text: string, name: string): boolean {
  return parseSeries(text).some((s) => s.name === name);
}

export interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseSeries(text: string): Series[] {
  const out: Series[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    out.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return out;
}

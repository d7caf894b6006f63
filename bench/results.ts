import { readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

/**
 * Benchmarks write their results into bench/RESULTS.md, each into its own
 * section between markers, so running one benchmark leaves the others'
 * results in place. Each section says when, on what machine, and how it was
 * run.
 */
const RESULTS = fileURLToPath(new URL('./RESULTS.md', import.meta.url));

const HEADER = `# Benchmark results

Written by \`npm run bench -- <name>\` (see bench/README.md). Each section is
replaced when its benchmark runs again; numbers are only comparable within a
section, where the reference runs in the same process on the same machine.
`;

export function machineLine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
}

export async function writeSection(name: string, title: string, body: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(RESULTS, 'utf8');
  } catch {
    text = HEADER;
  }
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const section = `${start}\n## ${title}\n\n_${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC · ${machineLine()}_\n\n${body.trim()}\n${end}`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  text = i >= 0 && j > i ? `${text.slice(0, i)}${section}${text.slice(j + end.length)}` : `${text.trimEnd()}\n\n${section}\n`;
  await writeFile(RESULTS, text);
}

/** A markdown table from a header row and data rows. */
export function table(header: string[], rows: (string | number)[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

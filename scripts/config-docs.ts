import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderEnvExample, renderMarkdownTable, replaceVariablesTable } from './config-registry.js';

/**
 * `npm run config:docs`: regenerates .env.example and the variable tables in
 * docs/configuration.md and README.md from the config schemas.
 */
const root = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
writeFileSync(root('.env.example'), renderEnvExample());
for (const path of ['docs/configuration.md', 'README.md']) {
  writeFileSync(root(path), replaceVariablesTable(readFileSync(root(path), 'utf8'), renderMarkdownTable()));
}
console.log('wrote .env.example, docs/configuration.md and README.md');

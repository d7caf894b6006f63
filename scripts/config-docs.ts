import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderEnvExample, renderMarkdownTable, replaceVariablesTable } from './config-registry.js';

/**
 * `npm run config:docs`: regenerates .env.example and the variable table in
 * docs/configuration.md from the config schemas.
 */
const root = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
writeFileSync(root('.env.example'), renderEnvExample());
const doc = root('docs/configuration.md');
writeFileSync(doc, replaceVariablesTable(readFileSync(doc, 'utf8'), renderMarkdownTable()));
console.log('wrote .env.example and docs/configuration.md');

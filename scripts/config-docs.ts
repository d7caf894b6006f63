import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderEnvExample, renderMarkdownTable } from './config-registry.js';

/**
 * `npm run config:docs`: regenerates .env.example and the variable table in
 * docs/configuration.md from the config schemas.
 */
const root = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
writeFileSync(root('.env.example'), renderEnvExample());

const docPath = root('docs/configuration.md');
const doc = readFileSync(docPath, 'utf8');
const start = '<!-- variables:start -->';
const end = '<!-- variables:end -->';
const before = doc.slice(0, doc.indexOf(start) + start.length);
const after = doc.slice(doc.indexOf(end));
writeFileSync(docPath, `${before}\n${renderMarkdownTable()}\n${after}`);
console.log('wrote .env.example and docs/configuration.md');

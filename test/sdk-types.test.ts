import t from 'tap';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { renderSdkTypes, SDK_TYPES_PATH } from '../scripts/sdk-types.js';

/** The SDK's types are the API's route schemas, and the SDK stands alone (fetch and Web Crypto only). */
t.test('sdk/types.ts is generated from the current route schemas', async (t) => {
  const onDisk = await readFile(SDK_TYPES_PATH, 'utf8');
  t.ok(onDisk === (await renderSdkTypes()), 'sdk/types.ts is stale: run `npm run sdk:types`');
});

t.test('the SDK imports nothing outside sdk/ and compiles with no Node types', async (t) => {
  const source = await readFile(new URL('../sdk/index.ts', import.meta.url), 'utf8');
  const imports = [...source.matchAll(/from '([^']+)'/g)].map((m) => m[1]);
  t.same([...new Set(imports)], ['./types.js'], 'only its own generated types');
  const tsc = promisify(execFile)(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'sdk/tsconfig.json', '--noEmit'], { timeout: 120_000 });
  await t.resolves(tsc, 'tsc -p sdk/tsconfig.json (lib ES2022 + DOM, types: [])');
});

import { parseArgs } from 'node:util';
import { Type } from '@sinclair/typebox';
import { connectDb } from '../db/connect.js';
import { createVendor, deleteVendor, rotateApiKey, updateVendorLimits } from '../db/repos/vendors.js';
import { loadConfig } from '../platform/config.js';
import { MysqlSection } from '../platform/config-sections.js';
import { parseOriginList, storedOrigins } from '../platform/origins.js';
import { describeConnectError } from './preflight.js';

/**
 * Vendor administration from the shell.
 *   npm run vendor -- create --name NAME [--plan standard|unlimited] [--role admin]
 *   npm run vendor -- rotate-key --id VENDOR_ID
 *   npm run vendor -- delete --id VENDOR_ID
 *   npm run vendor -- cors --id VENDOR_ID --origins https://app.example.com,https://admin.example.com
 *   npm run vendor -- cors --id VENDOR_ID --default      (back to CORS_ORIGINS; --origins '' allows none)
 * Each prints one JSON line; the API key is shown once and stored only hashed.
 */
const USAGE = [
  'usage: npm run vendor -- create --name NAME [--plan standard|unlimited] [--role vendor|admin]',
  '       npm run vendor -- rotate-key --id VENDOR_ID',
  '       npm run vendor -- delete --id VENDOR_ID',
  '       npm run vendor -- cors --id VENDOR_ID (--origins ORIGIN[,ORIGIN…] | --default)',
].join('\n');
const PLANS = ['standard', 'unlimited'];

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: 'string' },
    plan: { type: 'string', default: 'standard' },
    role: { type: 'string', default: 'vendor' },
    id: { type: 'string' },
    origins: { type: 'string' },
    default: { type: 'boolean' },
  },
});

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

const command = positionals[0];
if (!command || !['create', 'rotate-key', 'delete', 'cors'].includes(command)) fail(`unknown command ${command ?? '(none)'}`);
if (command === 'create' && !values.name?.trim()) fail('--name is required');
if (command === 'create' && !PLANS.includes(values.plan ?? '')) fail(`--plan must be one of ${PLANS.join(', ')}`);
if (command === 'create' && values.role !== 'vendor' && values.role !== 'admin') fail('--role must be vendor or admin');
if (command !== 'create' && !values.id) fail('--id is required');
let corsOrigins: string[] | null = null;
if (command === 'cors') {
  if ((values.origins === undefined) === (values.default !== true)) fail('cors needs --origins LIST or --default');
  try {
    corsOrigins = values.default ? null : parseOriginList(values.origins ?? '');
  } catch (error) {
    fail(`--origins: ${(error as Error).message}`);
  }
}

const config = loadConfig(Type.Object({ ...MysqlSection }));
const db = connectDb({ url: config.MYSQL_URL, poolSize: 1 });
try {
  if (command === 'create') {
    const created = await createVendor(db, { name: values.name!.trim(), plan: values.plan!, role: values.role as 'vendor' | 'admin' });
    console.log(JSON.stringify(created));
  } else if (command === 'cors') {
    const vendor = await updateVendorLimits(db, values.id!, { corsOrigins: corsOrigins === null ? null : JSON.stringify(corsOrigins) });
    if (!vendor) fail(`no vendor ${values.id}`);
    // The API sees it within VENDOR_CACHE_MS.
    console.log(JSON.stringify({ vendorId: vendor.id, corsOrigins: storedOrigins(vendor.cors_origins) }));
  } else if (command === 'rotate-key') {
    const apiKey = await rotateApiKey(db, values.id!);
    if (!apiKey) fail(`no vendor ${values.id}`);
    console.log(JSON.stringify({ vendorId: values.id, apiKey }));
  } else {
    if (!(await deleteVendor(db, values.id!))) fail(`no vendor ${values.id}`);
    console.log(JSON.stringify({ vendorId: values.id, deleted: true }));
  }
} catch (error) {
  const code = (error as { code?: string }).code;
  if (code === 'ER_NO_SUCH_TABLE' || code === 'ER_BAD_DB_ERROR') console.error('the database is not set up yet: run `npm run migrate` (npm start does it too)');
  else console.error(describeConnectError('MySQL', config.MYSQL_URL, error));
  process.exitCode = 1;
} finally {
  await db.destroy();
}

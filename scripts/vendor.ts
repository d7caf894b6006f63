import { parseArgs } from 'node:util';
import { Type } from '@sinclair/typebox';
import { connectDb } from '../db/connect.js';
import { createVendor, deleteVendor, rotateApiKey, updateVendorLimits, type VendorLimitsChange } from '../db/repos/vendors.js';
import { parsePlanRetention } from '../jobs/retention.js';
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
 *   npm run vendor -- set --id VENDOR_ID [--plan P] [--retention jobs=90d,uploads=30d|plan]
 * Each prints one JSON line; the API key is shown once and stored only hashed.
 */
const USAGE = [
  'usage: npm run vendor -- create --name NAME [--plan standard|unlimited] [--role vendor|admin]',
  '       npm run vendor -- rotate-key --id VENDOR_ID',
  '       npm run vendor -- delete --id VENDOR_ID',
  '       npm run vendor -- cors --id VENDOR_ID (--origins ORIGIN[,ORIGIN…] | --default)',
  '       npm run vendor -- set --id VENDOR_ID [--plan standard|unlimited] [--retention KIND=PERIOD,…|plan]',
].join('\n');
const PLANS = ['standard', 'unlimited'];

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: 'string' },
    plan: { type: 'string' },
    role: { type: 'string', default: 'vendor' },
    id: { type: 'string' },
    origins: { type: 'string' },
    default: { type: 'boolean' },
    retention: { type: 'string' },
  },
});

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

const command = positionals[0];
if (!command || !['create', 'rotate-key', 'delete', 'cors', 'set'].includes(command)) fail(`unknown command ${command ?? '(none)'}`);
if (command === 'create' && !values.name?.trim()) fail('--name is required');
if (values.plan !== undefined && !PLANS.includes(values.plan)) fail(`--plan must be one of ${PLANS.join(', ')}`);
const change = command === 'set' ? settingsChange() : {};
if (command === 'set' && Object.keys(change).length === 0) fail('set needs --plan or --retention');
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

/** What `set` changes: `--retention plan` drops the vendor's overrides, `--retention jobs=90d,…` replaces them. */
function settingsChange(): VendorLimitsChange {
  const out: VendorLimitsChange = {};
  if (values.plan !== undefined) out.plan = values.plan;
  if (values.retention === 'plan') out.retention = null;
  else if (values.retention !== undefined) {
    try {
      out.retention = JSON.stringify(parsePlanRetention(values.retention));
    } catch {
      fail('--retention must be kind=period pairs (jobs, uploads, deadLetters, events, webhookDeliveries; 90s, 12h, 30d), or plan');
    }
  }
  return out;
}

const config = loadConfig(Type.Object({ ...MysqlSection }));
const db = connectDb({ url: config.MYSQL_URL, poolSize: 1 });
try {
  if (command === 'create') {
    const created = await createVendor(db, { name: values.name!.trim(), plan: values.plan ?? 'standard', role: values.role as 'vendor' | 'admin' });
    console.log(JSON.stringify(created));
  } else if (command === 'cors') {
    const vendor = await updateVendorLimits(db, values.id!, { corsOrigins: corsOrigins === null ? null : JSON.stringify(corsOrigins) });
    if (!vendor) fail(`no vendor ${values.id}`);
    // The API sees it within VENDOR_CACHE_MS.
    console.log(JSON.stringify({ vendorId: vendor.id, corsOrigins: storedOrigins(vendor.cors_origins) }));
  } else if (command === 'set') {
    const vendor = await updateVendorLimits(db, values.id!, change);
    if (!vendor) fail(`no vendor ${values.id}`);
    console.log(JSON.stringify({ vendorId: vendor.id, plan: vendor.plan, retention: vendor.retention === null ? null : JSON.parse(vendor.retention) }));
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

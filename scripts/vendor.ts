import { parseArgs } from 'node:util';
import { Type } from '@sinclair/typebox';
import { connectDb } from '../db/connect.js';
import { createVendor, deleteVendor, rotateApiKey, updateVendorLimits, type VendorLimitsChange } from '../db/repos/vendors.js';
import { parsePlanRetention } from '../jobs/retention.js';
import { loadConfig } from '../platform/config.js';
import { MysqlSection, RedisSection } from '../platform/config-sections.js';
import { createRedis } from '../platform/redis.js';
import { announceRevocation } from '../jobs/events.js';
import { parseOriginList, storedOrigins } from '../platform/origins.js';
import { describeConnectError } from './preflight.js';

/**
 * Vendor administration from the shell.
 *   npm run vendor -- create --name NAME [--plan standard|unlimited] [--role admin]
 *   npm run vendor -- rotate-key --id VENDOR_ID
 *   npm run vendor -- delete --id VENDOR_ID
 *   npm run vendor -- cors --id VENDOR_ID --origins https://app.example.com,https://admin.example.com
 *   npm run vendor -- cors --id VENDOR_ID --default      (back to CORS_ORIGINS; --origins '' allows none)
 *   npm run vendor -- set --id VENDOR_ID [--plan P] [--retention jobs=90d,uploads=30d|plan] [--face-tagging on|off]
 * Each prints one JSON line; the API key is shown once and stored only hashed.
 * rotate-key and delete revoke every token of the vendor: the row's
 * token_version goes up, and a message on Redis tells every API process to
 * drop its cached row and close the vendor's event streams and long-polls
 * at once (without Redis the tokens still stop within VENDOR_CACHE_MS).
 */
const USAGE = [
  'usage: npm run vendor -- create --name NAME [--plan standard|unlimited] [--role vendor|admin]',
  '       npm run vendor -- rotate-key --id VENDOR_ID',
  '       npm run vendor -- delete --id VENDOR_ID',
  '       npm run vendor -- cors --id VENDOR_ID (--origins ORIGIN[,ORIGIN…] | --default)',
  '       npm run vendor -- set --id VENDOR_ID [--plan standard|unlimited] [--retention KIND=PERIOD,…|plan] [--face-tagging on|off]',
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
    'face-tagging': { type: 'string' },
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
if (command === 'set' && Object.keys(change).length === 0) fail('set needs --plan, --retention or --face-tagging');
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
  const faceTagging = values['face-tagging'];
  if (faceTagging !== undefined && faceTagging !== 'on' && faceTagging !== 'off') fail('--face-tagging must be on or off');
  if (faceTagging !== undefined) out.faceTagging = faceTagging === 'on';
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

const config = loadConfig(Type.Object({ ...MysqlSection, ...RedisSection }));
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
    console.log(
      JSON.stringify({
        vendorId: vendor.id,
        plan: vendor.plan,
        retention: vendor.retention === null ? null : JSON.parse(vendor.retention),
        faceTagging: vendor.face_tagging === 1,
      }),
    );
  } else if (command === 'rotate-key') {
    const apiKey = await rotateApiKey(db, values.id!);
    if (!apiKey) fail(`no vendor ${values.id}`);
    const tokensRevoked = await revoke(values.id!);
    console.log(JSON.stringify({ vendorId: values.id, apiKey, tokensRevoked }));
  } else {
    if (!(await deleteVendor(db, values.id!))) fail(`no vendor ${values.id}`);
    const tokensRevoked = await revoke(values.id!);
    console.log(JSON.stringify({ vendorId: values.id, deleted: true, tokensRevoked }));
  }
} catch (error) {
  const code = (error as { code?: string }).code;
  if (code === 'ER_NO_SUCH_TABLE' || code === 'ER_BAD_DB_ERROR') console.error('the database is not set up yet: run `npm run migrate` (npm start does it too)');
  else console.error(describeConnectError('MySQL', config.MYSQL_URL, error));
  process.exitCode = 1;
} finally {
  await db.destroy();
}

/**
 * Tells the API processes, over Redis, that the vendor's tokens are revoked:
 * 'now' once published; 'within VENDOR_CACHE_MS' when Redis could not be
 * reached (the row already says so; each process reads it again when its
 * cached copy expires).
 */
async function revoke(vendorId: string): Promise<string> {
  const redis = createRedis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000, enableOfflineQueue: true });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await announceRevocation(redis, config.BULL_PREFIX, vendorId);
    return 'now';
  } catch (error) {
    console.error(`warning: could not tell the API processes over Redis (${(error as Error).message}); the old tokens stop within VENDOR_CACHE_MS`);
    return 'within VENDOR_CACHE_MS';
  } finally {
    redis.disconnect();
  }
}

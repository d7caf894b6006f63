import { Type, type Static } from '@sinclair/typebox';
import { env, loadConfig } from '../platform/config.js';
import { MysqlSection, RedisSection } from '../platform/config-sections.js';

/** What `npm start` itself reads; each process it starts reads its own. */
export const LauncherConfigSchema = Type.Object({
  ...MysqlSection,
  ...RedisSection,
  NODE_ENV: env.enum(['development', 'production', 'test'], 'development', 'runtime mode (development, production, test)'),
  PORT: env.int(3000, 'port the API listens on', { minimum: 0, maximum: 65535 }),
  WORKER_PROCESSES: env.int(1, 'worker processes `npm start` runs', { minimum: 0, maximum: 64 }),
  WORKER_METRICS_PORT: env.int(9464, "port of the worker's /metrics server (0 = no metrics server); npm start gives each worker process the next port", {
    minimum: 0,
    maximum: 65535,
  }),
  REMBG_URLS: env.string('', 'comma-separated rembg instances for the worker pool; empty = `npm start` runs its own'),
  REMBG_INSTANCES: env.int(2, 'local rembg instances `npm start` runs when REMBG_URLS is empty', { minimum: 0, maximum: 32 }),
  REMBG_PORT: env.int(5000, 'port of the first local rembg instance (the next ones count up)', { minimum: 1, maximum: 65535 }),
});

export type LauncherConfig = Static<typeof LauncherConfigSchema>;

export function loadLauncherConfig(): LauncherConfig {
  return loadConfig(LauncherConfigSchema);
}

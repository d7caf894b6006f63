import { buildApp } from './app.js';
import { loadApiConfig } from './config.js';
import { runMain } from '../platform/process.js';

/** Starts the API: read config, build, listen, close cleanly on SIGINT/SIGTERM. */
await runMain('api', async () => {
  const config = loadApiConfig();
  const app = await buildApp(config);
  await app.listen({ host: config.HOST, port: config.PORT });
  return { log: app.log, close: () => app.close() };
});

import { buildRembgApp } from './app.js';
import { loadRembgConfig } from './config.js';
import { runMain } from '../platform/process.js';

/** Starts one rembg instance: config, the default model loaded, then listen. */
await runMain('rembg', async () => {
  const config = loadRembgConfig();
  const app = await buildRembgApp(config);
  await app.listen({ host: config.REMBG_HOST, port: config.REMBG_PORT });
  return { log: app.log, close: () => app.close() };
});

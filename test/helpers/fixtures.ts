import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

/**
 * The shared fixtures folder: `../shared/fixtures` beside the checkout, else
 * the workplace's `/work/shared/fixtures` (a clone made elsewhere, such as
 * CI's, may have no `../shared`).
 */
export const FIXTURES_DIR =
  [fileURLToPath(new URL('../../../shared/fixtures', import.meta.url)), '/work/shared/fixtures'].find((dir): dir is string => !!dir && existsSync(dir)) ??
  fileURLToPath(new URL('../../../shared/fixtures', import.meta.url));

export function fixturePath(name: string): string {
  return join(FIXTURES_DIR, name);
}

export function readFixture(name: string): Promise<Buffer> {
  return readFile(fixturePath(name));
}

/** A generated test photo: a gradient with a shape, so resizing has content to keep. */
export async function makeJpeg(width: number, height: number): Promise<Buffer> {
  const svg = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
       <defs><linearGradient id="g"><stop offset="0" stop-color="#2a6"/><stop offset="1" stop-color="#36c"/></linearGradient></defs>
       <rect width="100%" height="100%" fill="url(#g)"/>
       <circle cx="${width / 2}" cy="${height / 2}" r="${Math.min(width, height) / 4}" fill="#fc3"/>
     </svg>`,
  );
  return sharp(svg).jpeg({ quality: 85 }).toBuffer();
}

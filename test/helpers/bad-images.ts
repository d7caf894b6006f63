import { crc32, createDeflate } from 'node:zlib';
import { makeJpeg } from './fixtures.js';

/**
 * Hostile image files, built byte by byte where no encoder would make them:
 * a decompression bomb, a truncated JPEG, an SVG that reaches out, a JPEG
 * and a PNG with oversized EXIF.
 */

/** A PNG chunk: length, type, data, CRC over type and data. */
function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function ihdr(width: number, height: number): Buffer {
  const data = Buffer.alloc(13);
  data.writeUInt32BE(width, 0);
  data.writeUInt32BE(height, 4);
  data[8] = 8; // bit depth
  data[9] = 0; // greyscale
  return chunk('IHDR', data);
}

/** Deflated all-zero scanlines (filter byte 0 + zero pixels), streamed so the raw image is never in memory. */
async function zeroScanlines(width: number, height: number): Promise<Buffer> {
  const deflate = createDeflate({ level: 1, chunkSize: 1 << 20 });
  const out: Buffer[] = [];
  deflate.on('data', (c: Buffer) => out.push(c));
  const done = new Promise<void>((resolve, reject) => deflate.on('end', resolve).on('error', reject));
  const rowsPerWrite = Math.max(1, Math.floor((4 << 20) / (width + 1)));
  const block = Buffer.alloc((width + 1) * rowsPerWrite);
  for (let row = 0; row < height; row += rowsPerWrite) {
    const rows = Math.min(rowsPerWrite, height - row);
    if (!deflate.write(rows === rowsPerWrite ? block : block.subarray(0, (width + 1) * rows))) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await done;
  return Buffer.concat(out);
}

/** A greyscale PNG of zeros: a few MB on the wire, width × height bytes once decoded (30000² = 900 MB). */
export async function pngBomb(width = 30_000, height = 30_000): Promise<Buffer> {
  return Buffer.concat([PNG_SIGNATURE, ihdr(width, height), chunk('IDAT', await zeroScanlines(width, height)), chunk('IEND', Buffer.alloc(0))]);
}

/** A small, valid PNG with an `eXIf` chunk of `exifBytes` (a TIFF header and one huge ASCII ImageDescription). */
export async function pngWithHugeExif(exifBytes = 8 << 20): Promise<Buffer> {
  return Buffer.concat([
    PNG_SIGNATURE,
    ihdr(16, 16),
    chunk('eXIf', tiffWithDescription(exifBytes)),
    chunk('IDAT', await zeroScanlines(16, 16)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A TIFF structure (as EXIF carries it): IFD0 with one ASCII ImageDescription of about `size` bytes. */
function tiffWithDescription(size: number): Buffer {
  const textLength = Math.max(16, size - 26);
  const tiff = Buffer.alloc(8 + 2 + 12 + 4 + textLength);
  tiff.write('II*\0', 0, 'latin1');
  tiff.writeUInt32LE(8, 4); // IFD0 offset
  tiff.writeUInt16LE(1, 8); // one entry
  tiff.writeUInt16LE(0x010e, 10); // ImageDescription
  tiff.writeUInt16LE(2, 12); // ASCII
  tiff.writeUInt32LE(textLength, 14);
  tiff.writeUInt32LE(26, 18); // value offset
  tiff.writeUInt32LE(0, 22); // no next IFD
  tiff.fill('A', 26, 26 + textLength - 1);
  return tiff;
}

/**
 * A real JPEG with an APP1 EXIF segment as large as JPEG allows (64 KB),
 * its IFD claiming thousands of entries that point outside the block.
 */
export async function jpegWithHugeExif(width = 64, height = 48): Promise<Buffer> {
  const jpeg = await makeJpeg(width, height);
  const tiff = Buffer.alloc(65_000);
  tiff.write('II*\0', 0, 'latin1');
  tiff.writeUInt32LE(8, 4);
  const entries = 5000;
  tiff.writeUInt16LE(entries, 8);
  for (let i = 0; i < entries && 10 + i * 12 + 12 <= tiff.length; i++) {
    const at = 10 + i * 12;
    tiff.writeUInt16LE(0x010e + (i % 40), at);
    tiff.writeUInt16LE(2, at + 2);
    tiff.writeUInt32LE(0x7fffffff, at + 4); // count far beyond the block
    tiff.writeUInt32LE(0xfffffff0, at + 8); // offset far beyond the block
  }
  const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const header = Buffer.from([0xff, 0xe1, 0, 0]);
  header.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([jpeg.subarray(0, 2), header, payload, jpeg.subarray(2)]);
}

/** The first `fraction` of a valid JPEG. */
export async function truncatedJpeg(fraction = 0.5): Promise<Buffer> {
  const whole = await makeJpeg(800, 600);
  return whole.subarray(0, Math.floor(whole.length * fraction));
}

/** An SVG that would make a renderer fetch `base`: an <image>, a CSS import, an external entity, a <use>. */
export function svgWithExternalRefs(base: string): Buffer {
  return Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE svg [ <!ENTITY ext SYSTEM "${base}/entity.txt"> ]>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">
  <style>@import url("${base}/style.css");</style>
  <image href="${base}/leak.png" x="0" y="0" width="64" height="64"/>
  <image xlink:href="file:///etc/passwd" width="1" height="1"/>
  <use href="${base}/sprite.svg#a"/>
  <text>&ext;</text>
</svg>`);
}

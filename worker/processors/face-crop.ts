import sharp from 'sharp';
import { AppError } from '../../jobs/errors.js';
import { checkFaceCropOptions, faceCropFormat, facePreset, type FaceCropFormat, type FaceCropMode } from '../../jobs/face-presets.js';
import { openImage, runSharp } from '../../platform/images.js';
import type { Processor } from '../context.js';
import { replaceBackground, type CutOut } from '../faces/background.js';
import type { Box, DetectedFace, FaceEngine, RgbImage } from '../faces/engine.js';
import { checkCrop, measureFace, placeFace, round, toOutput } from '../faces/geometry.js';
import { boxAround, preciseLandmarks } from '../faces/locate.js';
import { edgeColour, renderPlacement } from '../faces/render.js';
import type { FaceTagger, FacesSummary } from '../faces/tagging.js';
import type { RembgClient } from '../rembg/types.js';

/**
 * The face-crop queue: passport and ID-card photos. The largest (or only)
 * face is found, its eye line levelled, and the photo scaled and placed so
 * the head meets the preset; where the photo ends the crop is padded. The
 * result reports the checks a studio would make, measured again on the
 * finished crop.
 */
export interface FaceCropSettings {
  /** a head (chin to crown) shorter than this in source pixels is FACE_TOO_SMALL */
  minHeadPx: Record<FaceCropMode, number>;
  /** with face=only, faces smaller than this fraction of the largest (box height) do not count */
  onlyIgnoreBelow: number;
  /** rembg model for white/transparent backgrounds; null = the service's default */
  backgroundModel: string | null;
}

export interface FaceCropServices {
  engine: FaceEngine;
  /** background removal for white/transparent backgrounds; null fails those jobs with REMBG_UNAVAILABLE */
  rembg: RembgClient | null;
  /** face tagging for `tagFaces: true`; null fails those jobs */
  tagger: FaceTagger | null;
  settings: FaceCropSettings;
}

const WHITE = { r: 255, g: 255, b: 255 };
const JPEG_QUALITY = 92;

export function createFaceCropProcessor(services: FaceCropServices): Processor<'face-crop'> {
  const { engine, settings } = services;
  return async (ctx) => {
    const { options } = ctx.payload;
    const preset = facePreset(options.mode);
    const background = options.background ?? 'original';
    const problem = checkFaceCropOptions(options)[0];
    if (problem) throw new AppError('BAD_REQUEST', `options.${problem.path}: ${problem.message}`);
    const format = faceCropFormat(options);
    if (options.tagFaces && !services.tagger) throw new AppError('SERVICE_UNAVAILABLE', 'face tagging is not available in this worker');

    const { bytes, info } = await ctx.loadSource();
    const image = await decodeRgb(bytes, info.width * info.height);

    const faces = await engine.detect(image, { detector: options.detector, signal: ctx.signal });
    const face = chooseFace(faces, options.face ?? 'largest', settings.onlyIgnoreBelow);
    const landmarks = await preciseLandmarks(engine, image, face.box, ctx.signal);
    const before = measureFace(landmarks);
    const minHead = settings.minHeadPx[options.mode];
    if (before.headHeight < minHead) {
      throw new AppError(
        'FACE_TOO_SMALL',
        `the head is ${Math.round(before.headHeight)} px from chin to crown; a ${options.mode} crop needs at least ${minHead} px of it in the photo`,
        { details: { headHeightPx: Math.round(before.headHeight), minHeadPx: minHead } },
      );
    }
    await ctx.progress(40);

    const placement = placeFace(before, preset);
    const pad = background === 'original' ? edgeColour(image, placement) : WHITE;
    const crop = await renderPlacement(image, placement, pad);
    // Measured, not assumed: landmarks are found again on the finished crop.
    // The face there is upright and where the placement put it, so one look
    // in the box framed on the carried-over landmarks is the second look of
    // preciseLandmarks, at no extra cost.
    const expected = landmarks.map((p) => toOutput(placement, p));
    const after = measureFace(await engine.landmarks(crop, boxAround(expected, 0), { signal: ctx.signal }));
    const checks = checkCrop(before, after, preset);

    const pixels: CutOut =
      background === 'original'
        ? { ...crop, channels: 3 }
        : await replaceBackground(services.rembg, crop, background, { model: settings.backgroundModel, signal: ctx.signal });
    await ctx.progress(80);
    const encoded = await encodeCrop(pixels, format, preset.dpi);
    const output = await ctx.store(options.mode, encoded, { format, width: pixels.width, height: pixels.height });

    let tagged: FacesSummary | undefined;
    if (options.tagFaces && services.tagger) {
      const { vendorId, jobId, projectId, recordId } = ctx.payload;
      tagged = await services.tagger.tag(image, { vendorId, jobId, projectId, recordId }, { faces, signal: ctx.signal });
    }

    const faceResult = {
      box: roundBox(face.box),
      score: round(face.score),
      headHeightPx: Math.round(before.headHeight),
      eyeDistancePx: Math.round(Math.hypot(before.eyes[1].x - before.eyes[0].x, before.eyes[1].y - before.eyes[0].y)),
      facesFound: faces.length,
    };
    return {
      result: {
        success: true,
        photoUrl: output.url,
        width: output.width,
        height: output.height,
        format,
        mode: options.mode,
        preset: { title: preset.title, widthMm: preset.widthMm, heightMm: preset.heightMm, dpi: preset.dpi },
        background,
        face: faceResult,
        scale: round(placement.scale),
        upscaled: placement.scale > 1,
        padding: crop.padding,
        checks,
        outputs: [output],
        source: { format: info.format, width: info.width, height: info.height, bytes: info.bytes },
        ...(tagged ? { faces: tagged } : {}),
      },
      record: { processedPhotoUrl: output.url, width: output.width, height: output.height },
      recordFields: { 'faceCrop.output': output, 'faceCrop.face': faceResult, 'faceCrop.checks': checks },
    };
  };
}

/**
 * The face to crop. `only` refuses photos with several faces, not counting
 * faces much smaller than the largest (people in the background, posters).
 */
export function chooseFace(faces: DetectedFace[], rule: 'only' | 'largest', ignoreBelow: number): DetectedFace {
  if (faces.length === 0) throw new AppError('NO_FACE', 'no face was found in the photo');
  const largest = faces.reduce((a, b) => (b.box.width * b.box.height > a.box.width * a.box.height ? b : a));
  if (rule === 'only') {
    const counted = faces.filter((f) => f.box.height >= ignoreBelow * largest.box.height);
    if (counted.length > 1) {
      throw new AppError('MULTIPLE_FACES', `the photo shows ${counted.length} faces; face=only needs exactly one (face=largest crops the largest)`, {
        details: { faces: counted.map((f) => roundBox(f.box)) },
      });
    }
  }
  return largest;
}

async function decodeRgb(bytes: Buffer, maxPixels: number): Promise<RgbImage> {
  return runSharp(async () => {
    const { data, info } = await openImage(bytes, maxPixels)
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new AppError('BAD_IMAGE', `expected an RGB image after decoding, got ${info.channels} channels`);
    return { data, width: info.width, height: info.height };
  });
}

async function encodeCrop(p: CutOut, format: FaceCropFormat, dpi: number): Promise<Buffer> {
  return runSharp(() => {
    const image = sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } }).withDensity(dpi);
    switch (format) {
      case 'jpeg':
        return image.jpeg({ quality: JPEG_QUALITY, chromaSubsampling: '4:4:4' }).toBuffer();
      case 'png':
        return image.png({ compressionLevel: 6 }).toBuffer();
      case 'webp':
        return image.webp({ quality: JPEG_QUALITY, alphaQuality: 100 }).toBuffer();
    }
  });
}

function roundBox(box: Box): Box {
  return { x: Math.round(box.x), y: Math.round(box.y), width: Math.round(box.width), height: Math.round(box.height) };
}

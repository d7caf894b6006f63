import t from 'tap';
import { CROWN_FROM_EYES, FACE_PRESETS, checkFaceCropOptions, faceCropFormat } from '../jobs/face-presets.js';
import { checkCrop, measureFace, placeFace, toOutput, toSource } from '../worker/faces/geometry.js';
import { chooseFace } from '../worker/processors/face-crop.js';
import { tinyInputSizes } from '../worker/faces/config-section.js';
import type { Point } from '../worker/faces/engine.js';

/**
 * Placement arithmetic on synthetic landmarks: an upright face of known
 * proportions, turned by a known angle, must come out level, at the preset's
 * head ratio, centred.
 */
function syntheticFace(centre: Point, eyeDistance: number, eyesToChin: number, tiltDeg: number): Point[] {
  const a = (tiltDeg * Math.PI) / 180;
  const turn = (dx: number, dy: number): Point => ({ x: centre.x + dx * Math.cos(a) - dy * Math.sin(a), y: centre.y + dx * Math.sin(a) + dy * Math.cos(a) });
  const points: Point[] = Array.from({ length: 68 }, () => turn(0, eyesToChin / 2));
  for (let i = 0; i <= 16; i++) points[i] = turn(((i - 8) / 8) * eyeDistance, eyesToChin * (1 - Math.abs(i - 8) / 16));
  for (const i of [36, 37, 38, 39, 40, 41]) points[i] = turn(-eyeDistance / 2, 0);
  for (const i of [42, 43, 44, 45, 46, 47]) points[i] = turn(eyeDistance / 2, 0);
  return points;
}

t.test('presets: passport is 35×45 mm at 600 dpi, idcard is GA 461-2004', async (t) => {
  const p = FACE_PRESETS.passport;
  t.equal(p.width, Math.round((p.widthMm / 25.4) * p.dpi));
  t.equal(p.height, Math.round((p.heightMm / 25.4) * p.dpi));
  t.same([p.width, p.height], [827, 1063]);
  t.same([p.headRatio.min, p.headRatio.max], [0.7, 0.8]);
  const id = FACE_PRESETS.idcard;
  t.same([id.width, id.height, id.dpi], [358, 441, 350]);
  t.equal(id.width, Math.round((id.widthMm / 25.4) * id.dpi));
  t.equal(id.height, Math.round((id.heightMm / 25.4) * id.dpi));
  for (const preset of Object.values(FACE_PRESETS)) {
    t.ok(preset.headRatio.target >= preset.headRatio.min && preset.headRatio.target <= preset.headRatio.max, `${preset.mode} target inside its range`);
    // the planned eye line must satisfy the preset's own rule
    const eyeFromTop = preset.crownMargin + (preset.headRatio.target * CROWN_FROM_EYES) / (1 + CROWN_FROM_EYES);
    if (preset.minEyeLineFromBottom !== null) t.ok(1 - eyeFromTop >= preset.minEyeLineFromBottom, `${preset.mode} eye line high enough`);
    t.ok(preset.crownMargin + preset.headRatio.target < 1, `${preset.mode} chin inside the photo`);
  }
});

t.test('a face turned 10° is levelled, scaled to the target head ratio and centred', async (t) => {
  for (const tilt of [-10, 0, 10, 25]) {
    const landmarks = syntheticFace({ x: 700, y: 500 }, 120, 170, tilt);
    const before = measureFace(landmarks);
    t.ok(Math.abs(before.tiltDeg - tilt) < 1e-9, `tilt ${tilt} measured`);
    t.ok(Math.abs(before.headHeight - 170 * (1 + CROWN_FROM_EYES)) < 1e-9, 'head height from eyes-to-chin');
    for (const preset of Object.values(FACE_PRESETS)) {
      const pl = placeFace(before, preset);
      const after = measureFace(landmarks.map((p) => toOutput(pl, p)));
      const checks = checkCrop(before, after, preset);
      t.ok(Math.abs(after.tiltDeg) < 1e-6, `${preset.mode} ${tilt}°: eyes level`);
      t.ok(Math.abs(checks.headRatio.value - preset.headRatio.target) < 0.001, `${preset.mode} ${tilt}°: head ratio on target`);
      t.ok(Math.abs(checks.horizontalOffset.value) < 0.001, `${preset.mode} ${tilt}°: centred`);
      t.ok(Math.abs(after.crown.y - preset.crownMargin * preset.height) < 0.01, `${preset.mode} ${tilt}°: crown at its margin`);
      t.equal(checks.pass, true);
      t.equal(checks.eyeTilt.before, Math.round(tilt * 100) / 100);
      const back = toSource(pl, toOutput(pl, { x: 123, y: 456 }));
      t.ok(Math.abs(back.x - 123) < 1e-9 && Math.abs(back.y - 456) < 1e-9, 'toSource inverts toOutput');
    }
  }
});

t.test('checks fail outside the preset', async (t) => {
  const preset = FACE_PRESETS.passport;
  const landmarks = syntheticFace({ x: 400, y: 400 }, 100, 150, 0);
  const before = measureFace(landmarks);
  const pl = placeFace(before, preset);
  const tilted = measureFace(landmarks.map((p) => toOutput(pl, p)).map((p) => ({ x: p.x, y: p.y + (p.x - 413) * Math.tan((3 * Math.PI) / 180) })));
  const checks = checkCrop(before, tilted, preset);
  t.equal(checks.eyeTilt.pass, false, '3° tilt fails the 2° limit');
  t.equal(checks.pass, false);
  const small = measureFace(landmarks.map((p) => toOutput({ ...pl, scale: pl.scale * 0.8 }, p)));
  t.equal(checkCrop(before, small, preset).headRatio.pass, false, 'head at 60 % fails');
});

t.test('face choice: none, several, background faces', async (t) => {
  const face = (x: number, h: number) => ({ box: { x, y: 10, width: h * 0.8, height: h }, score: 0.9 });
  t.throws(() => chooseFace([], 'largest', 0.35), { code: 'NO_FACE' });
  t.throws(() => chooseFace([face(0, 200), face(300, 180)], 'only', 0.35), { code: 'MULTIPLE_FACES' });
  t.equal(chooseFace([face(0, 200), face(300, 180)], 'largest', 0.35).box.x, 0);
  t.equal(chooseFace([face(0, 100), face(300, 300)], 'largest', 0.35).box.x, 300, 'largest wins');
  t.equal(chooseFace([face(0, 300), face(400, 60)], 'only', 0.35).box.x, 0, 'a face a fifth the size is background');
  t.throws(() => chooseFace([face(0, 300), face(400, 60)], 'only', 0), { code: 'MULTIPLE_FACES' }, '0 counts every face');
});

t.test('options: format follows the background; jpeg cannot be transparent', async (t) => {
  t.equal(faceCropFormat({}), 'jpeg');
  t.equal(faceCropFormat({ background: 'transparent' }), 'png');
  t.equal(faceCropFormat({ background: 'white', format: 'webp' }), 'webp');
  t.same(checkFaceCropOptions({ background: 'transparent', format: 'jpeg' })[0]?.path, 'format');
  t.same(checkFaceCropOptions({ background: 'transparent', format: 'webp' }), []);
  t.same(tinyInputSizes('224, 416'), [224, 416]);
  t.throws(() => tinyInputSizes('224,400'), /FACE_TINY_INPUT_SIZES/);
});

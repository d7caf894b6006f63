import t from 'tap';
import { OPERATION_NAMES } from '../jobs/operations.js';
import { resolvePipeline } from '../jobs/presets.js';

/**
 * Presets and pipeline requests resolve to operation lists, or to problems
 * named by field. Pure. (processing.test.ts runs both presets through the API
 * and a worker.)
 */
const limits = { maxDimension: 4000 };

t.test('explicit operations pass through, checked', async (t) => {
  const ok = resolvePipeline({ operations: [{ op: 'resize', width: 100 }] }, limits);
  t.same(ok, { operations: [{ op: 'resize', width: 100 }], problems: [] });
  const bad = resolvePipeline({ operations: [{ op: 'resize', width: 5000 }] }, limits);
  t.same(bad.problems, [{ path: 'operations/0/width', message: 'must be <= 4000' }]);
});

t.test('a request names operations or a preset, exactly one', async (t) => {
  t.same(resolvePipeline({}, limits).problems, [{ path: 'operations', message: 'is required (or a preset)' }]);
  t.same(resolvePipeline({ operations: [{ op: 'strip' }], preset: 'nextgallery' }, limits).problems, [
    { path: 'preset', message: 'give either operations or a preset, not both' },
  ]);
  t.same(resolvePipeline({ operations: [{ op: 'strip' }], presetOptions: { faces: true } }, limits).problems, [
    { path: 'presetOptions', message: 'applies only with a preset' },
  ]);
});

t.test('nextgallery: store a clean copy and a placeholder; faces only when asked and available', async (t) => {
  t.same(resolvePipeline({ preset: 'nextgallery' }, limits), { operations: [{ op: 'strip' }, { op: 'placeholder' }], problems: [] });
  t.same(resolvePipeline({ preset: 'nextgallery', presetOptions: { faces: false } }, limits).operations, [{ op: 'strip' }, { op: 'placeholder' }]);

  const withoutFaces = resolvePipeline({ preset: 'nextgallery', presetOptions: { faces: true } }, limits);
  if (OPERATION_NAMES.includes('faces' as never)) {
    t.same(withoutFaces.problems, [], 'this build has the faces operation');
  } else {
    t.same(withoutFaces, {
      operations: [],
      problems: [{ path: 'presetOptions/faces', message: 'face tagging is not available on this server' }],
    });
  }
  const withFaces = resolvePipeline({ preset: 'nextgallery', presetOptions: { faces: true } }, { ...limits, available: [...OPERATION_NAMES, 'faces'] });
  t.same(withFaces, { operations: [{ op: 'strip' }, { op: 'placeholder' }, { op: 'faces' }], problems: [] });
});

t.test('gallery-variants: metadata then variants, options carried', async (t) => {
  t.same(resolvePipeline({ preset: 'gallery-variants' }, limits).operations, [{ op: 'metadata' }, { op: 'variants' }]);
  const custom = resolvePipeline({ preset: 'gallery-variants', presetOptions: { sizes: { thumb: 200, full: 1600 }, formats: ['jpeg'], quality: 70 } }, limits);
  t.same(custom, {
    operations: [{ op: 'metadata' }, { op: 'variants', sizes: { thumb: 200, full: 1600 }, formats: ['jpeg'], quality: 70 }],
    problems: [],
  });
  t.same(resolvePipeline({ preset: 'gallery-variants', presetOptions: { sizes: { xl: 8000 } } }, limits).problems, [
    { path: 'presetOptions/sizes/xl', message: 'must be <= 4000' },
  ]);
  t.same(resolvePipeline({ preset: 'gallery-variants', presetOptions: { faces: true } }, limits).problems, [
    { path: 'presetOptions/faces', message: 'is not an option of preset gallery-variants' },
  ]);
  t.same(resolvePipeline({ preset: 'nextgallery', presetOptions: { quality: 50 } }, limits).problems, [
    { path: 'presetOptions/quality', message: 'is not an option of preset nextgallery' },
  ]);
});

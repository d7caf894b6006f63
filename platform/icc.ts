/**
 * Just enough ICC profile reading for two questions: what is the profile
 * called, and is it sRGB (so converting from it to sRGB can be skipped)?
 * A profile is a 128-byte header, a tag count at 128, then 12-byte entries
 * (signature, offset, size).
 */
export function iccDescription(icc: Buffer | undefined): string | null {
  const tag = findTag(icc, 'desc');
  if (!icc || !tag) return null;
  const { offset, size } = tag;
  const type = icc.toString('latin1', offset, offset + 4);
  if (type === 'desc' && size >= 12) {
    const length = icc.readUInt32BE(offset + 8);
    return clean(icc.toString('latin1', offset + 12, Math.min(offset + 12 + length, offset + size)));
  }
  if (type === 'mluc' && size >= 28) {
    const length = icc.readUInt32BE(offset + 20);
    const start = offset + icc.readUInt32BE(offset + 24);
    if (start + length > offset + size) return null;
    return clean(
      Buffer.from(icc.subarray(start, start + length))
        .swap16()
        .toString('utf16le'),
    );
  }
  return null;
}

/** sRGB's red, green and blue primaries as ICC profiles store them (XYZ, adapted to D50). */
const SRGB_PRIMARIES: Record<string, [number, number, number]> = {
  rXYZ: [0.4361, 0.2225, 0.0139],
  gXYZ: [0.3851, 0.7169, 0.0971],
  bXYZ: [0.1431, 0.0606, 0.7141],
};

/**
 * True for an RGB profile that says it is sRGB and has sRGB's primaries.
 * Most camera and phone JPEGs embed one; converting from it to sRGB is an
 * expensive no-op: about two thirds of the CPU of decoding a 3 MP JPEG, a
 * third of a streamed resize (bench/processing.ts, stage profile).
 */
export function isSrgbProfile(icc: Buffer | undefined): boolean {
  if (!icc || icc.length < 132 || icc.toString('latin1', 16, 20) !== 'RGB ') return false;
  const name = iccDescription(icc);
  if (!name || !/srgb/i.test(name) || /linear/i.test(name)) return false;
  return Object.entries(SRGB_PRIMARIES).every(([signature, expected]) => {
    const tag = findTag(icc, signature);
    if (!tag || tag.size < 20 || icc.toString('latin1', tag.offset, tag.offset + 4) !== 'XYZ ') return false;
    return expected.every((value, i) => Math.abs(icc.readInt32BE(tag.offset + 8 + 4 * i) / 65536 - value) < 0.003);
  });
}

function findTag(icc: Buffer | undefined, signature: string): { offset: number; size: number } | null {
  if (!icc || icc.length < 132) return null;
  const count = icc.readUInt32BE(128);
  for (let i = 0; i < count && 144 + i * 12 <= icc.length; i++) {
    const at = 132 + i * 12;
    if (icc.toString('latin1', at, at + 4) !== signature) continue;
    const offset = icc.readUInt32BE(at + 4);
    const size = icc.readUInt32BE(at + 8);
    return offset + size <= icc.length ? { offset, size } : null;
  }
  return null;
}

function clean(s: string): string | null {
  const text = s.replace(/\0[\s\S]*$/, '').trim();
  return text === '' ? null : text;
}

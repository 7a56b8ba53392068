import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Sets the display matrix of the first track of an MP4 to "rotate 90° clockwise" (what phones
 * write for portrait video). Debian's ffmpeg 5.1 has no option for it (-display_rotation is 6.0+),
 * so the tkhd box is patched in place.
 */
export function setMp4Rotation90(inFile: string, outFile: string): void {
  const b = readFileSync(inFile);
  const i = b.indexOf('tkhd');
  if (i < 0) throw new Error('no tkhd box');
  const version = b[i + 4];
  // type(4) version+flags(4) times/track/reserved/duration (20 or 32) reserved(8) layer..volume..reserved(8)
  const matrixAt = i + 4 + 4 + (version === 1 ? 32 : 20) + 8 + 8;
  [0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000].forEach((v, k) => b.writeInt32BE(v, matrixAt + 4 * k));
  writeFileSync(outFile, b);
}

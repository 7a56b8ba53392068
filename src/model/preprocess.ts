/**
 * Frame → vision input: an rgb24 picture of any size becomes the float32 NCHW tensor data
 * [1, 3, H, W] the vision graph takes, (x/255 − mean)/std per channel.
 *
 * Frames already at the model's size (what ingest delivers) are normalised directly;
 * others are resized with sharp according to the fit mode: fill (stretch), crop (cover,
 * centre) or letterbox (contain, black bars).
 */
import sharp from 'sharp';
import { InputError } from '../errors.js';
import type { Fit } from '../ingest/types.js';
import type { Manifest } from './manifest.js';

export interface RgbFrame {
  width: number;
  height: number;
  /** width·height·3 bytes, packed RGB, row-major, top row first. */
  rgb: Buffer | Uint8Array;
}

/**
 * Per channel, value → normalised float, computed with the same float32 operations as the
 * exporter's numpy code (x/255, then (x − mean)/std), so the pixels match bit for bit.
 */
function normalisationTable(mean: readonly number[], std: readonly number[]): Float32Array {
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const m = Math.fround(mean[c] as number);
    const s = Math.fround(std[c] as number);
    for (let x = 0; x < 256; x++) {
      const v = Math.fround(x / 255);
      lut[c * 256 + x] = Math.fround(Math.fround(v - m) / s);
    }
  }
  return lut;
}

export class Preprocessor {
  readonly width: number;
  readonly height: number;
  readonly fit: Fit;
  private readonly lut: Float32Array;

  constructor(image: Manifest['image'], fit?: Fit) {
    this.width = image.width;
    this.height = image.height;
    this.fit = fit ?? image.fit;
    this.lut = normalisationTable(image.mean, image.std);
  }

  /** Resizes (when needed) and normalises `frame` into `out` (3·H·W floats, NCHW). */
  async pixels(frame: RgbFrame, out?: Float32Array): Promise<Float32Array> {
    const { width, height } = frame;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
      throw new InputError(`frame has an invalid size ${width}x${height}`);
    }
    if (frame.rgb.length !== width * height * 3) {
      throw new InputError(`frame of ${width}x${height} has ${frame.rgb.length} bytes of rgb24, expected ${width * height * 3}`);
    }
    const rgb = width === this.width && height === this.height ? frame.rgb : await this.resize(frame);
    const dst = out ?? new Float32Array(3 * this.width * this.height);
    this.normalise(rgb, dst);
    return dst;
  }

  /** rgb24 at the model's size → normalised NCHW floats. */
  normalise(rgb: Uint8Array, dst: Float32Array): void {
    const plane = this.width * this.height;
    const lut = this.lut;
    for (let i = 0, j = 0; i < plane; i++, j += 3) {
      dst[i] = lut[rgb[j] as number] as number;
      dst[plane + i] = lut[256 + (rgb[j + 1] as number)] as number;
      dst[2 * plane + i] = lut[512 + (rgb[j + 2] as number)] as number;
    }
  }

  private async resize(frame: RgbFrame): Promise<Buffer> {
    const fit = this.fit === 'crop' ? 'cover' : this.fit === 'letterbox' ? 'contain' : 'fill';
    const input = Buffer.isBuffer(frame.rgb) ? frame.rgb : Buffer.from(frame.rgb.buffer, frame.rgb.byteOffset, frame.rgb.byteLength);
    const out = await sharp(input, { raw: { width: frame.width, height: frame.height, channels: 3 } })
      .resize(this.width, this.height, { fit, position: 'centre', background: { r: 0, g: 0, b: 0 } })
      .removeAlpha()
      .raw()
      .toBuffer();
    if (out.length !== this.width * this.height * 3) {
      throw new InputError(`resizing a ${frame.width}x${frame.height} frame gave ${out.length} bytes, expected ${this.width * this.height * 3}`);
    }
    return out;
  }
}

/**
 * Files of several containers, codecs, rates and sizes through real ffmpeg: frame count,
 * pts spacing, size and orientation.
 */
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openFrameSource, type Fit, type Frame, type SourceOptions } from '../../src/ingest/index.js';
import { ffmpeg, makeClip, makeRedOverBlue, tempDir, x264Args } from './helpers/media.js';
import { childProcesses, strayChildren } from './helpers/procs.js';
import { setMp4Rotation90 } from './helpers/rotate.js';
import { consume, readToEnd } from './helpers/sources.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

interface Clip {
  name: string;
  file: string;
  /** Source frame interval (s): the ±1 frame tolerance of pts spacing. */
  frameInterval: number;
  make: (file: string) => Promise<unknown>;
}

const x264 = x264Args(25);
const clips: Clip[] = [
  {
    name: 'H.264 / MP4, 25 fps',
    file: 'h264.mp4',
    frameInterval: 1 / 25,
    make: (f) => makeClip(f, { size: '320x240', rate: 25, seconds: 4, codecArgs: x264 }),
  },
  {
    name: 'VP9 / WebM, 30 fps',
    file: 'vp9.webm',
    frameInterval: 1 / 30,
    make: (f) =>
      makeClip(f, {
        size: '320x240',
        rate: 30,
        seconds: 3,
        codecArgs: ['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '300k'],
      }),
  },
  {
    name: 'MJPEG / AVI, 60 fps',
    file: 'mjpeg.avi',
    frameInterval: 1 / 60,
    make: (f) => makeClip(f, { size: '320x240', rate: 60, seconds: 3, codecArgs: ['-c:v', 'mjpeg', '-q:v', '8'] }),
  },
  {
    name: 'HEVC / MKV, 30 fps',
    file: 'hevc.mkv',
    frameInterval: 1 / 30,
    make: (f) =>
      makeClip(f, {
        size: '320x240',
        rate: 30,
        seconds: 3,
        codecArgs: ['-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'log-level=error', '-g', '30'],
      }),
  },
  {
    name: 'variable frame rate (24 then 50 fps) / MKV',
    file: 'vfr.mkv',
    frameInterval: 1 / 24,
    make: (f) =>
      makeClip(f, {
        size: '320x240',
        rate: 50,
        seconds: 5,
        // 48 frames at 1/24 s, then 100 at 1/50 s: 4 s of variable-rate video.
        filter: "setpts='if(lt(N,48),N/24,2+(N-48)/50)/TB',trim=end=4",
        codecArgs: [...x264, '-fps_mode', 'vfr'],
      }),
  },
  {
    name: 'odd size 1279x719 / MJPEG, 60 fps',
    file: 'odd.avi',
    frameInterval: 1 / 60,
    make: (f) => makeClip(f, { size: '1279x719', rate: 60, seconds: 2, codecArgs: ['-c:v', 'mjpeg', '-q:v', '10'] }),
  },
  {
    name: 'odd size 1279x719 / VP9, 25 fps',
    file: 'odd.webm',
    frameInterval: 1 / 25,
    make: (f) =>
      makeClip(f, {
        size: '1279x719',
        rate: 25,
        seconds: 2,
        codecArgs: ['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '400k'],
      }),
  },
];

beforeAll(async () => {
  await Promise.all(clips.map((c) => c.make(join(tmp.dir, c.file))));
  await makeRedOverBlue(join(tmp.dir, 'upright.mp4'), { width: 320, height: 240, seconds: 2 });
  setMp4Rotation90(join(tmp.dir, 'upright.mp4'), join(tmp.dir, 'rot90.mp4'));
}, 60_000);

/** The source's duration, then all its frames and statuses (throws its error). */
async function collect(opts: SourceOptions) {
  const source = openFrameSource(opts);
  const duration = await source.durationSeconds();
  const { frames, statuses, error } = await readToEnd(source);
  if (error) throw error;
  return { frames, statuses, duration };
}

describe('files: count, timing and size', () => {
  for (const clip of clips) {
    for (const fps of [2, 5]) {
      it(`${clip.name} at ${fps} fps`, async () => {
        const W = 96;
        const H = 64;
        const { frames, statuses, duration } = await collect({ input: join(tmp.dir, clip.file), width: W, height: H, fps });
        expect(duration).toBeGreaterThan(1);
        const expected = duration! * fps;
        expect(Math.abs(frames.length - expected)).toBeLessThanOrEqual(1);
        frames.forEach((f, i) => {
          expect(f.index).toBe(i);
          expect(f.width).toBe(W);
          expect(f.height).toBe(H);
          expect(f.rgb.length).toBe(W * H * 3);
        });
        expect(frames[0]!.ptsSeconds).toBeLessThan(clip.frameInterval + 1e-3);
        for (let i = 1; i < frames.length; i++) {
          const gap = frames[i]!.ptsSeconds - frames[i - 1]!.ptsSeconds;
          expect(Math.abs(gap - 1 / fps)).toBeLessThanOrEqual(clip.frameInterval + 2e-3);
        }
        expect(statuses.map((s) => s.state)).toEqual(['connecting', 'live', 'ended']);
        expect(statuses.at(-1)!.reason).toBe('end of input');
        expect(strayChildren()).toEqual([]);
      });
    }
  }
});

/** x0, y0, x1, y1 (x1 and y1 excluded) of a rectangle of a frame. */
type Box = [number, number, number, number];

/** Mean colour of a rectangle of an RGB frame. */
function mean(f: Frame, [x0, y0, x1, y1]: Box): [number, number, number] {
  const s = [0, 0, 0];
  let n = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const o = (y * f.width + x) * 3;
      s[0]! += f.rgb[o]!;
      s[1]! += f.rgb[o + 1]!;
      s[2]! += f.rgb[o + 2]!;
      n++;
    }
  }
  return [s[0]! / n, s[1]! / n, s[2]! / n];
}
const isBlack = (c: number[]): boolean => c[0]! < 20 && c[1]! < 20 && c[2]! < 20;
const COLOURS = {
  red: (c: number[]): boolean => c[0]! > 180 && c[2]! < 70,
  blue: (c: number[]): boolean => c[2]! > 180 && c[0]! < 70,
  black: isBlack,
  'not black': (c: number[]): boolean => !isBlack(c),
};

/** Expects each rectangle of the frame to have its colour (by its mean). */
function expectColours(f: Frame, boxes: Array<[keyof typeof COLOURS, Box]>): void {
  for (const [colour, box] of boxes) expect(COLOURS[colour](mean(f, box)), `${colour} at [${box.join(', ')}]`).toBe(true);
}

interface FitCase {
  name: string;
  /** Made in beforeAll from the 320x240 red-over-blue clip (upright.mp4). */
  file: 'upright.mp4' | 'rot90.mp4' | 'anamorphic.mp4';
  width: number;
  height: number;
  fit: Fit;
  maxFrames: number;
  /** Rectangles of the first frame and their colour. */
  colours: Array<[keyof typeof COLOURS, Box]>;
}

const fitCases: FitCase[] = [
  {
    name: 'upright video keeps red on top (fill)',
    file: 'upright.mp4', width: 64, height: 64, fit: 'fill', maxFrames: 1,
    colours: [
      ['red', [0, 4, 64, 28]],
      ['blue', [0, 36, 64, 60]],
    ],
  },
  {
    name: 'rotation metadata is applied: a 90° clockwise phone video puts the top (red) on the right',
    file: 'rot90.mp4', width: 64, height: 64, fit: 'fill', maxFrames: 2,
    colours: [
      ['blue', [4, 0, 28, 64]],
      ['red', [36, 0, 60, 64]],
    ],
  },
  {
    // Displayed 240x320 into 96x64 → 48x64 picture, 24 px black bars on both sides.
    name: 'letterbox keeps the aspect ratio of the rotated (portrait) picture with bars left and right',
    file: 'rot90.mp4', width: 96, height: 64, fit: 'letterbox', maxFrames: 1,
    colours: [
      ['black', [0, 0, 22, 64]],
      ['black', [74, 0, 96, 64]],
      ['blue', [26, 0, 46, 64]],
      ['red', [50, 0, 70, 64]],
    ],
  },
  {
    // 320x240 red-over-blue into 64x64: scaled to 85x64, centre 64 columns kept, no bars.
    name: 'crop fills the frame: a landscape picture into a square keeps the centre',
    file: 'upright.mp4', width: 64, height: 64, fit: 'crop', maxFrames: 1,
    colours: [
      ['red', [0, 2, 64, 28]],
      ['blue', [0, 36, 64, 62]],
      ['not black', [0, 0, 4, 64]],
    ],
  },
  {
    // 320x240 into 64x64 → 64x48, 8 px bars.
    name: 'letterbox of a landscape picture into a square puts bars on top and bottom',
    file: 'upright.mp4', width: 64, height: 64, fit: 'letterbox', maxFrames: 1,
    colours: [
      ['black', [0, 0, 64, 7]],
      ['black', [0, 57, 64, 64]],
      ['red', [0, 10, 64, 30]],
      ['blue', [0, 34, 64, 54]],
    ],
  },
  {
    // 160x240 stored, SAR 2:1 → displayed 320x240 (4:3): letterboxed into 64x64 like the upright clip.
    name: 'anamorphic video (sample aspect ratio 2:1) is fitted by its display shape',
    file: 'anamorphic.mp4', width: 64, height: 64, fit: 'letterbox', maxFrames: 1,
    colours: [
      ['black', [0, 0, 64, 7]],
      ['red', [0, 10, 64, 30]],
      ['not black', [0, 10, 4, 30]],
    ],
  },
];

describe('files: orientation and fit', () => {
  beforeAll(async () => {
    const anamorphic = ['-vf', 'scale=160:240,setsar=2/1', '-c:v', 'libx264', '-preset', 'ultrafast'];
    await ffmpeg(['-i', join(tmp.dir, 'upright.mp4'), ...anamorphic, join(tmp.dir, 'anamorphic.mp4')]);
  });

  for (const c of fitCases) {
    it(c.name, async () => {
      const { frames } = await collect({ input: join(tmp.dir, c.file), width: c.width, height: c.height, fit: c.fit, maxFrames: c.maxFrames });
      expect(frames).toHaveLength(c.maxFrames);
      expect(frames[0]).toMatchObject({ width: c.width, height: c.height });
      expectColours(frames[0]!, c.colours);
    });
  }
});

describe('files: decode options (SourceOptions.decode)', () => {
  it('one decoding thread gives the same frames; skip_loop_filter the same frames, nearly the same pictures; skip_frame noref keeps the 2-fps grid within a few source frames', async () => {
    const file = join(tmp.dir, 'bframes.mp4');
    // B frames (veryfast: 3, some not referenced): what noref lets the decoder skip.
    await makeClip(file, { size: '320x240', rate: 25, seconds: 4, codecArgs: ['-c:v', 'libx264', '-preset', 'veryfast', '-bf', '3', '-g', '25', '-pix_fmt', 'yuv420p'] });
    const opts = { input: file, width: 64, height: 48, fps: 2 };
    const ref = (await collect(opts)).frames;
    const one = (await collect({ ...opts, decode: { threads: 1 } })).frames;
    expect(one.map((f) => f.ptsSeconds)).toEqual(ref.map((f) => f.ptsSeconds));
    one.forEach((f, i) => expect(f.rgb.equals(ref[i]!.rgb)).toBe(true));
    // No deblocking: the same frames, pictures within a few levels of the filtered ones.
    const unfiltered = (await collect({ ...opts, decode: { threads: 1, skipLoopFilter: true } })).frames;
    expect(unfiltered.map((f) => f.ptsSeconds)).toEqual(ref.map((f) => f.ptsSeconds));
    unfiltered.forEach((f, i) => {
      const r = ref[i]!.rgb;
      let sum = 0;
      for (let k = 0; k < r.length; k++) sum += Math.abs((f.rgb[k] as number) - (r[k] as number));
      expect(sum / r.length).toBeLessThan(4);
    });
    const noref = (await collect({ ...opts, decode: { threads: 1, skipFrame: 'noref' } })).frames;
    expect(Math.abs(noref.length - ref.length)).toBeLessThanOrEqual(1);
    noref.forEach((f, i) => {
      // a grid point on a skipped frame takes the next decoded one: later, by a few frame intervals at most
      const later = f.ptsSeconds - (ref[i]?.ptsSeconds ?? f.ptsSeconds);
      expect(later).toBeGreaterThanOrEqual(-1e-3);
      expect(later).toBeLessThanOrEqual(4 / 25 + 1e-3);
    });
    expect(strayChildren()).toEqual([]);
  });

  it('nice: ffmpeg runs that much lower in priority, with the same frames', async () => {
    const file = join(tmp.dir, 'nice.mp4');
    await makeClip(file, { size: '160x120', rate: 25, seconds: 3, codecArgs: x264 });
    const opts = { input: file, width: 32, height: 24, fps: 2 };
    const ref = (await collect(opts)).frames;
    // Read at native speed, so that the child is still running when the first frame is in.
    const source = openFrameSource({ ...opts, realtime: true, decode: { threads: 1, nice: 7 } });
    const reading = consume(source);
    await expect.poll(() => reading.frames.length, { timeout: 10_000 }).toBeGreaterThan(0);
    const decoders = childProcesses().filter((c) => c.comm === 'ffmpeg');
    expect(decoders.length).toBe(1);
    expect(decoders[0]!.nice).toBe(Math.min(19, getPriority() + 7)); // nice -n adds to this process's niceness
    await reading.done;
    expect(reading.frames.map((f) => f.ptsSeconds)).toEqual(ref.map((f) => f.ptsSeconds));
    reading.frames.forEach((f, i) => expect(f.rgb.equals(ref[i]!.rgb)).toBe(true));
    expect(strayChildren()).toEqual([]);
  });
});

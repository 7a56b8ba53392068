/**
 * Files of several containers, codecs, rates and sizes through real ffmpeg: frame count,
 * pts spacing, size and orientation.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openFrameSource, type Frame, type SourceStatus } from '../../src/ingest/index.js';
import { ffmpeg, makeClip, makeRedOverBlue, tempDir } from './helpers/media.js';
import { strayChildren } from './helpers/procs.js';
import { setMp4Rotation90 } from './helpers/rotate.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

interface Clip {
  name: string;
  file: string;
  /** Source frame interval (s): the ±1 frame tolerance of pts spacing. */
  frameInterval: number;
  make: (file: string) => Promise<unknown>;
}

const x264 = ['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25', '-pix_fmt', 'yuv420p'];
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

async function collect(opts: Parameters<typeof openFrameSource>[0]): Promise<{ frames: Frame[]; statuses: SourceStatus[]; duration: number | undefined }> {
  const source = openFrameSource(opts);
  const statuses: SourceStatus[] = [];
  source.on('status', (s) => statuses.push(s));
  const duration = await source.durationSeconds();
  const frames: Frame[] = [];
  for await (const f of source.frames()) frames.push(f);
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

/** Mean colour of a rectangle of an RGB frame. */
function mean(f: Frame, x0: number, y0: number, x1: number, y1: number): [number, number, number] {
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
const isRed = (c: number[]): boolean => c[0]! > 180 && c[2]! < 70;
const isBlue = (c: number[]): boolean => c[2]! > 180 && c[0]! < 70;
const isBlack = (c: number[]): boolean => c[0]! < 20 && c[1]! < 20 && c[2]! < 20;

describe('files: orientation and fit', () => {
  it('upright video keeps red on top (fill)', async () => {
    const { frames } = await collect({ input: join(tmp.dir, 'upright.mp4'), width: 64, height: 64, fit: 'fill', maxFrames: 1 });
    expect(frames).toHaveLength(1);
    const f = frames[0]!;
    expect(isRed(mean(f, 0, 4, 64, 28))).toBe(true);
    expect(isBlue(mean(f, 0, 36, 64, 60))).toBe(true);
  });

  it('rotation metadata is applied: a 90° clockwise phone video puts the top (red) on the right', async () => {
    const { frames } = await collect({ input: join(tmp.dir, 'rot90.mp4'), width: 64, height: 64, fit: 'fill', maxFrames: 2 });
    const f = frames[0]!;
    expect(isBlue(mean(f, 4, 0, 28, 64))).toBe(true);
    expect(isRed(mean(f, 36, 0, 60, 64))).toBe(true);
  });

  it('letterbox keeps the aspect ratio of the rotated (portrait) picture with bars left and right', async () => {
    // Displayed 240x320 into 96x64 → 48x64 picture, 24 px black bars on both sides.
    const { frames } = await collect({ input: join(tmp.dir, 'rot90.mp4'), width: 96, height: 64, fit: 'letterbox', maxFrames: 1 });
    const f = frames[0]!;
    expect(f.width).toBe(96);
    expect(f.height).toBe(64);
    expect(isBlack(mean(f, 0, 0, 22, 64))).toBe(true);
    expect(isBlack(mean(f, 74, 0, 96, 64))).toBe(true);
    expect(isBlue(mean(f, 26, 0, 46, 64))).toBe(true);
    expect(isRed(mean(f, 50, 0, 70, 64))).toBe(true);
  });

  it('crop fills the frame: a landscape picture into a square keeps the centre', async () => {
    // 320x240 red-over-blue into 64x64: scaled to 85x64, centre 64 columns kept, no bars.
    const { frames } = await collect({ input: join(tmp.dir, 'upright.mp4'), width: 64, height: 64, fit: 'crop', maxFrames: 1 });
    const f = frames[0]!;
    expect(isRed(mean(f, 0, 2, 64, 28))).toBe(true);
    expect(isBlue(mean(f, 0, 36, 64, 62))).toBe(true);
    expect(isBlack(mean(f, 0, 0, 4, 64))).toBe(false);
  });

  it('letterbox of a landscape picture into a square puts bars on top and bottom', async () => {
    // 320x240 into 64x64 → 64x48, 8 px bars.
    const { frames } = await collect({ input: join(tmp.dir, 'upright.mp4'), width: 64, height: 64, fit: 'letterbox', maxFrames: 1 });
    const f = frames[0]!;
    expect(isBlack(mean(f, 0, 0, 64, 7))).toBe(true);
    expect(isBlack(mean(f, 0, 57, 64, 64))).toBe(true);
    expect(isRed(mean(f, 0, 10, 64, 30))).toBe(true);
    expect(isBlue(mean(f, 0, 34, 64, 54))).toBe(true);
  });

  it('anamorphic video (sample aspect ratio 2:1) is fitted by its display shape', async () => {
    // 160x240 stored, SAR 2:1 → displayed 320x240 (4:3): letterboxed into 64x64 like the upright clip.
    const file = join(tmp.dir, 'anamorphic.mp4');
    await ffmpeg([
      '-i',
      join(tmp.dir, 'upright.mp4'),
      '-vf',
      'scale=160:240,setsar=2/1',
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      file,
    ]);
    const { frames } = await collect({ input: file, width: 64, height: 64, fit: 'letterbox', maxFrames: 1 });
    const f = frames[0]!;
    expect(isBlack(mean(f, 0, 0, 64, 7))).toBe(true);
    expect(isRed(mean(f, 0, 10, 64, 30))).toBe(true);
    expect(isBlack(mean(f, 0, 10, 4, 30))).toBe(false);
  });
});

/** ffmpeg / ffprobe resolution order, and the bundled (older, 4.x) ffmpeg actually working. */
import { chmodSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clearFfmpegCache, openFrameSource, resolveFfmpeg, type Frame } from '../../src/ingest/index.js';
import { parseVersionOutput } from '../../src/ingest/binaries.js';
import { makeClip, tempDir } from './helpers/media.js';

const require = createRequire(import.meta.url);
const bundledFfmpeg = (require('@ffmpeg-installer/ffmpeg') as { path: string }).path;
const bundledFfprobe = (require('@ffprobe-installer/ffprobe') as { path: string }).path;
const tmp = tempDir();
const saved = { PATH: process.env.PATH, FFMPEG_PATH: process.env.FFMPEG_PATH, FFPROBE_PATH: process.env.FFPROBE_PATH };
let clip: string;

beforeAll(async () => {
  clip = join(tmp.dir, 'clip.mkv');
  await makeClip(clip, { size: '160x120', rate: 30, seconds: 3, codecArgs: ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'] });
});
afterEach(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  clearFfmpegCache();
});
afterAll(() => tmp.cleanup());

describe('resolveFfmpeg', () => {
  it('uses the system ffmpeg (on PATH) by default, with its version and ffprobe next to it', async () => {
    delete process.env.FFMPEG_PATH;
    delete process.env.FFPROBE_PATH;
    const logged: object[] = [];
    const r = await resolveFfmpeg({ logger: { info: (o) => logged.push(o), warn() {}, error() {}, debug() {} } });
    expect(r.source).toBe('system');
    expect(r.ffmpegPath).toMatch(/\/ffmpeg$/);
    expect(r.ffprobePath).toMatch(/\/ffprobe$/);
    expect(r.version).toMatch(/^\d+\.\d+/);
    expect(logged[0]).toMatchObject({ ffmpeg: r.ffmpegPath, source: 'system', version: r.version });
  });

  it('FFMPEG_PATH / FFPROBE_PATH win over PATH', async () => {
    process.env.FFMPEG_PATH = bundledFfmpeg;
    process.env.FFPROBE_PATH = bundledFfprobe;
    const r = await resolveFfmpeg();
    expect(r).toMatchObject({ source: 'env', ffmpegPath: bundledFfmpeg, ffprobePath: bundledFfprobe });
  });

  it('a configured path wins over FFMPEG_PATH', async () => {
    process.env.FFMPEG_PATH = bundledFfmpeg;
    const r = await resolveFfmpeg({ ffmpegPath: '/usr/bin/ffmpeg', ffprobePath: '/usr/bin/ffprobe' });
    expect(r).toMatchObject({ source: 'configured', ffmpegPath: '/usr/bin/ffmpeg', ffprobePath: '/usr/bin/ffprobe' });
  });

  it('falls back to the bundled npm binaries when there is none on PATH', async () => {
    delete process.env.FFMPEG_PATH;
    delete process.env.FFPROBE_PATH;
    process.env.PATH = tmp.dir;
    const r = await resolveFfmpeg();
    expect(r).toMatchObject({ source: 'bundled', ffmpegPath: bundledFfmpeg, ffprobePath: bundledFfprobe });
    expect(r.features.fpsMode).toBe(false); // a 4.x build: -vsync, -stimeout
    expect(r.features.rtspTimeoutOption).toBe('-stimeout');
  });

  it('an FFMPEG_PATH that is not executable, or an ffmpeg that does not run, is a clear config error', async () => {
    process.env.FFMPEG_PATH = join(tmp.dir, 'missing');
    await expect(resolveFfmpeg()).rejects.toThrow('The FFMPEG_PATH');
    clearFfmpegCache();
    const fake = join(tmp.dir, 'fake-ffmpeg');
    writeFileSync(fake, '#!/bin/sh\necho broken >&2\nexit 3\n');
    chmodSync(fake, 0o755);
    await expect(resolveFfmpeg({ ffmpegPath: fake })).rejects.toThrow(/does not run \(exit code 3\)/);
  });

  it('parses version output of release and git builds', () => {
    const deb = parseVersionOutput('ffmpeg version 5.1.9-0+deb12u1 Copyright\nlibavformat    59. 27.100 / 59. 27.100\n');
    expect(deb).toEqual({ version: '5.1.9-0+deb12u1', features: { libavformat: { major: 59, minor: 27 }, fpsMode: true, rtspTimeoutOption: '-timeout' } });
    const v50 = parseVersionOutput('ffmpeg version 5.0 Copyright\nlibavformat    59. 16.100 / 59. 16.100\n');
    expect(v50.features).toMatchObject({ fpsMode: false, rtspTimeoutOption: '-timeout' });
    const git = parseVersionOutput('ffmpeg version N-47683-g0e8eb07980-static https://x\nlibavformat    58. 20.100 / 58. 20.100\n');
    expect(git).toMatchObject({ version: 'N-47683-g0e8eb07980-static', features: { fpsMode: false, rtspTimeoutOption: '-stimeout' } });
  });
});

describe('the bundled ffmpeg 4.x', () => {
  it('delivers the same frames as the system ffmpeg', async () => {
    const run = async (ffmpegPath?: string): Promise<Frame[]> => {
      const s = openFrameSource({ input: clip, width: 48, height: 32, fps: 2, ...(ffmpegPath ? { ffmpegPath, ffprobePath: bundledFfprobe } : {}) });
      const out: Frame[] = [];
      for await (const f of s.frames()) out.push(f);
      return out;
    };
    const bundled = await run(bundledFfmpeg);
    const system = await run();
    expect(bundled).toHaveLength(6);
    expect(bundled.map((f) => f.ptsSeconds)).toEqual(system.map((f) => f.ptsSeconds));
  });
});

/**
 * Other inputs through real servers on 127.0.0.1: RTMP and SRT (ffmpeg in listen mode), HLS and
 * progressive MP4 over HTTP (node http server), MPEG-TS over UDP, and standard input.
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Frame, FrameSource, SourceOptions } from '../../src/ingest/index.js';
import { ffmpeg, freePort, Helpers, makeClip, sleep, tempDir, x264Args } from './helpers/media.js';
import { strayChildren } from './helpers/procs.js';
import { consume, increasing, OpenedSources } from './helpers/sources.js';

const tmp = tempDir();
const helpers = new Helpers();
const sources = new OpenedSources();
const open = (opts: SourceOptions) => sources.open(opts);
let clip: string;
let http: Server;
let httpPort: number;

beforeAll(async () => {
  clip = join(tmp.dir, 'clip.mp4');
  await makeClip(clip, { size: '320x240', rate: 25, seconds: 4, codecArgs: x264Args(10), extra: ['-movflags', '+faststart'] });
  await ffmpeg(['-i', clip, '-c', 'copy', '-f', 'mpegts', join(tmp.dir, 'clip.ts')]);
  await ffmpeg([
    '-i',
    clip,
    '-c',
    'copy',
    '-f',
    'hls',
    '-hls_time',
    '1',
    '-hls_playlist_type',
    'vod',
    '-hls_segment_filename',
    join(tmp.dir, 'seg%03d.ts'),
    join(tmp.dir, 'index.m3u8'),
  ]);
  http = createServer((req, res) => {
    const file = join(tmp.dir, (req.url ?? '/').split('?')[0]!.replace(/^\/+/, ''));
    try {
      const size = statSync(file).size;
      const type = { '.m3u8': 'application/vnd.apple.mpegurl', '.ts': 'video/mp2t', '.mp4': 'video/mp4' }[extname(file)] ?? 'application/octet-stream';
      res.writeHead(200, { 'Content-Type': type, 'Content-Length': size });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  httpPort = (http.address() as { port: number }).port;
});
afterEach(async () => {
  await sources.stopAll();
  await helpers.killAll();
});
afterAll(async () => {
  http.closeAllConnections();
  await new Promise<void>((r) => http.close(() => r()));
  tmp.cleanup();
});

/** Reads the source to its end (throws its error), taking `delayMs` per frame. */
async function drain(source: FrameSource, delayMs = 0): Promise<ReturnType<typeof consume>> {
  const reading = consume(source, delayMs);
  await reading.done;
  return reading;
}

/** Takes `n` frames from a live source, then stops it. */
async function take(source: FrameSource, n: number, timeoutMs = 15_000): Promise<Frame[]> {
  const frames: Frame[] = [];
  const timer = setTimeout(() => void source.stop(), timeoutMs);
  for await (const f of source.frames()) {
    frames.push(f);
    if (frames.length >= n) break;
  }
  clearTimeout(timer);
  return frames;
}

describe('network inputs', () => {
  /** Servers that ffmpeg plays: the looping clip served at `serve(port)`, read from `url(port)`. */
  const served = [
    {
      name: 'RTMP (ffmpeg serving with -listen 1)',
      serve: (port: number) => ['-f', 'flv', '-listen', '1', `rtmp://127.0.0.1:${port}/live/cam`],
      url: (port: number) => `rtmp://127.0.0.1:${port}/live/cam`,
    },
    {
      name: 'SRT (ffmpeg as listener)',
      serve: (port: number) => ['-f', 'mpegts', `srt://127.0.0.1:${port}?mode=listener`],
      url: (port: number) => `srt://127.0.0.1:${port}`,
    },
  ];
  for (const server of served) {
    it(server.name, async () => {
      const port = await freePort();
      helpers.ffmpeg(['-re', '-stream_loop', '-1', '-i', clip, '-c', 'copy', ...server.serve(port)]);
      const source = open({ input: server.url(port), width: 64, height: 48, fps: 4, reconnect: { initialDelayMs: 100, maxDelayMs: 300 } });
      expect(source.kind).toBe('live');
      const frames = await take(source, 4);
      expect(frames).toHaveLength(4);
      expect(increasing(frames)).toBe(true);
      expect(strayChildren(helpers.pids)).toEqual([]);
    });
  }

  it('MPEG-TS over UDP', async () => {
    const port = await freePort();
    const source = open({ input: `udp://127.0.0.1:${port}`, width: 64, height: 48, fps: 4 });
    const pending = take(source, 4);
    await sleep(300); // let ffmpeg bind the port first
    helpers.ffmpeg(['-re', '-stream_loop', '-1', '-i', join(tmp.dir, 'clip.ts'), '-c', 'copy', '-f', 'mpegts', `udp://127.0.0.1:${port}?pkt_size=1316`]);
    const frames = await pending;
    expect(frames).toHaveLength(4);
    expect(increasing(frames)).toBe(true);
  });

  it('HLS VOD playlist over HTTP reads like a file: every frame, then ended', async () => {
    const source = open({ input: `http://127.0.0.1:${httpPort}/index.m3u8`, width: 64, height: 48, fps: 2 });
    expect(source.kind).toBe('live');
    const duration = await source.durationSeconds();
    expect(duration).toBeGreaterThan(3.5);
    const { frames, statuses } = await drain(source, 20);
    expect(source.kind).toBe('file');
    expect(Math.abs(frames.length - duration! * 2)).toBeLessThanOrEqual(1);
    expect(source.droppedFrames).toBe(0);
    expect(increasing(frames)).toBe(true);
    expect(statuses.at(-1)).toMatchObject({ state: 'ended', reason: 'end of input' });
    expect(strayChildren()).toEqual([]);
  });

  it('progressive MP4 over HTTP', async () => {
    const source = open({ input: `http://127.0.0.1:${httpPort}/clip.mp4`, width: 64, height: 48, fps: 2 });
    const { frames, statuses } = await drain(source);
    expect(frames).toHaveLength(8);
    expect(statuses.at(-1)!.state).toBe('ended');
  });

  it('HTTP 404 → StreamNotFoundError', async () => {
    const source = open({ input: `http://127.0.0.1:${httpPort}/missing.m3u8`, width: 64, height: 48, reconnect: { maxRetries: 0 } });
    await expect(drain(source)).rejects.toMatchObject({ code: 'stream-not-found' });
  });
});

describe('standard input', () => {
  it('reads a stream piped into stdin ("-") to its end', async () => {
    const source = open({ input: '-', stdin: createReadStream(join(tmp.dir, 'clip.ts')), width: 64, height: 48, fps: 2 });
    expect(source.kind).toBe('stdin');
    expect(await source.durationSeconds()).toBeUndefined();
    const { frames, statuses } = await drain(source);
    expect(Math.abs(frames.length - 8)).toBeLessThanOrEqual(1);
    expect(increasing(frames)).toBe(true);
    expect(statuses.at(-1)).toMatchObject({ state: 'ended', reason: 'end of input' });
    expect(strayChildren()).toEqual([]);
  });
});

describe('pacing', () => {
  it('a file waits for a slow consumer (backpressure): nothing dropped, nothing queued', async () => {
    const source = open({ input: clip, width: 64, height: 48, fps: 2 });
    const { frames } = await drain(source, 120);
    expect(frames).toHaveLength(8);
    expect(source.droppedFrames).toBe(0);
  });

  it('a file runs faster than real time when the consumer keeps up', async () => {
    const t0 = Date.now();
    const { frames } = await drain(open({ input: clip, width: 64, height: 48, fps: 2 }));
    expect(frames).toHaveLength(8);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('realtime: true plays the file at its own speed and drops (newest wins) for a slow consumer', async () => {
    const t0 = Date.now();
    const source = open({ input: clip, width: 64, height: 48, fps: 5, realtime: true });
    const { frames } = await drain(source, 450);
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThan(3500);
    expect(source.droppedFrames).toBeGreaterThan(5);
    expect(frames.length + source.droppedFrames).toBeGreaterThanOrEqual(19);
    expect(frames.length + source.droppedFrames).toBeLessThanOrEqual(21);
    expect(increasing(frames)).toBe(true);
  });
});

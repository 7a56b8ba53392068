/**
 * A start-up storm: 64 file streams opened at once in one process (what a daemon booting with
 * many cameras, or the capacity benchmark, does). Each ffmpeg costs a fraction of a CPU-second
 * to start; on two cores, 64 started together take many seconds each. The start queue lets a
 * few start at a time, the connect timeout (not the stall timeout) bounds a start, and no
 * stream may be declared stalled. The test prints the start-up time distribution.
 */
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { ffmpegStarts, type Frame, type SourceStatus } from '../../src/ingest/index.js';
import { Helpers, makeClip, tempDir, waitFor, x264Args } from './helpers/media.js';
import { strayChildren } from './helpers/procs.js';
import { OpenedSources } from './helpers/sources.js';

const STREAMS = 64;
const tmp = tempDir();
const sources = new OpenedSources();
let clip: string;

beforeAll(async () => {
  clip = join(tmp.dir, 'cam.mp4');
  await makeClip(clip, { size: '256x256', rate: 10, seconds: 30, codecArgs: x264Args(10) });
});
afterEach(() => sources.stopAll());
afterAll(() => tmp.cleanup());

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

it(`starts ${STREAMS} file streams at once: every one delivers its first frame, none is declared stalled`, async () => {
  const openedAt = Date.now();
  const firstFrameAt: number[] = [];
  const statuses: SourceStatus[][] = [];
  const frames: number[] = [];
  let maxStarting = 0;
  const sampler = setInterval(() => (maxStarting = Math.max(maxStarting, ffmpegStarts.starting)), 10);
  for (let i = 0; i < STREAMS; i++) {
    // As the capacity benchmark reads its clips: in real time, at 2 fps, at the model's size.
    const source = sources.open({ input: clip, width: 224, height: 224, fps: 2, realtime: true });
    const mine: SourceStatus[] = [];
    statuses.push(mine);
    frames.push(0);
    source.on('status', (s) => mine.push(s));
    void (async () => {
      for await (const _frame of source.frames() as AsyncIterable<Frame>) {
        if (frames[i] === 0) firstFrameAt[i] = Date.now();
        frames[i]!++;
      }
    })().catch(() => undefined);
  }
  try {
    await waitFor(() => frames.every((n) => n >= 3), 200_000, 'three frames from every stream');
  } finally {
    clearInterval(sampler);
  }

  const failures = statuses.flat().filter((s) => s.state === 'error' || s.state === 'reconnecting');
  expect(failures, failures.map((s) => s.reason).join('\n')).toEqual([]);
  expect(statuses.every((list) => list.some((s) => s.state === 'live'))).toBe(true);
  expect(maxStarting).toBeLessThanOrEqual(ffmpegStarts.limit);

  const startup = statuses.map((list) => list.find((s) => s.state === 'live')!.startupMs!).sort((a, b) => a - b);
  const toFirst = firstFrameAt.map((t) => t - openedAt).sort((a, b) => a - b);
  const fmt = (xs: number[]): string => ['p50', 'p90', 'max'].map((q, i) => `${q} ${(quantile(xs, [0.5, 0.9, 1][i]!) / 1000).toFixed(2)} s`).join(', ');
  console.info(
    `[startup] ${STREAMS} streams, ${ffmpegStarts.limit} start slots: ffmpeg start → first frame ${fmt(startup)}; ` +
      `open → first frame (queue included) ${fmt(toFirst)}; at most ${maxStarting} starting at once`,
  );
  await sources.stopAll();
  expect(strayChildren(new Helpers().pids)).toEqual([]);
}, 240_000);

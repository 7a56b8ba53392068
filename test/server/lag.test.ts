// `lagMs` of status events (docs/protocol.md): how far the caption session is behind the
// newest frame — how long the frame the session takes had already been waiting for it, 0
// when the session was waiting for the frame. A real pipeline: ffmpeg reading a clip at its
// own speed (realtime: the newest frame wins) and the dev model; the consumer holds the
// pipeline back once, so frames pile up and the next one the session takes is late.
// Assertions compare the lag with times the test itself took, not with fixed thresholds.
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Model } from '../../src/engine.js';
import type { StatusEvent, UnsequencedEvent } from '../../src/events.js';
import { loadModelDir } from '../../src/pipeline/models.js';
import { createCaptionPipeline } from '../../src/pipeline/pipeline.js';
import type { CaptionPipelineHandle } from '../../src/pipeline/types.js';
import { DEV_MODEL, makeClip, sleep, tempDir } from '../cli/helpers.js';

const tmp = tempDir('casa-lag-');
let clip: string;
let model: Model;

beforeAll(async () => {
  [clip, model] = await Promise.all([makeClip(path.join(tmp.dir, 'clip.mp4'), 8), loadModelDir(DEV_MODEL)]);
}, 120_000);
afterAll(async () => {
  await model?.release();
  tmp.cleanup();
});

interface Taken {
  index: number;
  receivedAt: number;
  takenAt: number;
  lagMs: number;
}

type Status = Omit<StatusEvent, 'stream' | 'seq'>;

it('is how long the frame in hand waited for the session: 0 when the session was waiting, the wait after it was held back', async () => {
  const taken: Taken[] = [];
  const p: CaptionPipelineHandle = createCaptionPipeline({
    model,
    input: clip,
    realtime: true,
    fps: 4,
    maxFrames: 6,
    highWaterMark: 0,
    onFrame: (frame) => taken.push({ index: frame.index, receivedAt: frame.receivedAt, takenAt: Date.now(), lagMs: p.stats().lagMs }),
  });
  const events: UnsequencedEvent[] = [];
  let resumedAt: number | undefined;
  for await (const ev of p.events) {
    events.push(ev);
    if (ev.type === 'caption' && resumedAt === undefined) {
      // Hold the pipeline back: it captions one more frame, then waits for this consumer
      // while the source keeps only the newest frame.
      await sleep(2000);
      resumedAt = Date.now();
    }
  }
  expect(resumedAt).toBeDefined();
  const resumed = resumedAt as number;

  // The first frame comes out of ffmpeg after the session asked for it: no lag.
  expect(taken[0]).toMatchObject({ index: 0, lagMs: 0 });
  // A lag never exceeds how long the frame had waited when the session took it.
  for (const t of taken) {
    expect(t.lagMs).toBeGreaterThanOrEqual(0);
    expect(t.lagMs).toBeLessThanOrEqual(t.takenAt - t.receivedAt);
  }
  // The first frame taken after the hold arrived during it; the session asked for it only
  // after the consumer let go, so its lag covers at least the wait since then.
  const late = taken.find((t) => t.takenAt >= resumed);
  expect(late).toBeDefined();
  expect(late!.receivedAt).toBeLessThan(resumed);
  expect(late!.lagMs).toBeGreaterThanOrEqual(resumed - late!.receivedAt);
  expect(late!.lagMs).toBeGreaterThan(0);

  // Status events carry the lag of the frame in hand: a drop report the lag of the frame
  // just captioned, the final `ended` the lag of the last frame.
  const lagOf = (frame: number): number | undefined => taken.find((t) => t.index === frame)?.lagMs;
  const statuses = events.filter((e): e is Status => e.type === 'status');
  const report = events.findIndex((e) => e.type === 'status' && e.state === 'live' && e.droppedFrames > 0);
  expect(report).toBeGreaterThan(0);
  const before = events.slice(0, report).filter((e) => e.type === 'caption').at(-1);
  expect(before).toBeDefined();
  expect((events[report] as Status).lagMs).toBe(lagOf((before as { frame: number }).frame));
  expect(statuses.at(-1)).toMatchObject({ state: 'ended', lagMs: taken.at(-1)!.lagMs });
  expect(p.stats().lagMs).toBe(taken.at(-1)!.lagMs);
});

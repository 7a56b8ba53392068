// A bad stream beside a good one: the bad one is reported and retried on its own, the good
// one keeps captioning. Each stream runs a real ffmpeg child (the ffmpeg-driven stand-in
// for the model pipeline, fixtures/scripted-pipeline.mjs); the bad one points at a closed port.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runServe, type ServeHandle } from '../../src/server/index.js';
import { silentLogger } from '../../src/logger.js';
import { ffmpegFactory, ffmpegPath, type FfmpegFactory } from './fixtures/scripted-pipeline.mjs';
import { TestClient, getJson, makeClip, removeDir, tmpDir, writeConfig, TOKEN } from './helpers.js';

let dir: string;
let handle: ServeHandle;
let factory: FfmpegFactory;

beforeAll(async () => {
  dir = await tmpDir();
  const clip = await makeClip(dir, ffmpegPath());
  const configPath = await writeConfig(dir, {
    streams: [
      { id: 'good', input: clip },
      { id: 'bad', input: 'rtsp://127.0.0.1:1/camera-gone', restart: { initialDelayMs: 200, maxDelayMs: 400 } },
    ],
  });
  factory = ffmpegFactory();
  handle = await runServe({ configPath, pipelineFactory: factory, prepare: async () => ({ modelName: 'ffmpeg-stand-in' }), logger: silentLogger() });
  await handle.ready;
});

afterAll(async () => {
  await handle?.close();
  await removeDir(dir);
});

it('keeps captioning the good stream while the bad one fails and is retried', async () => {
  const c = await TestClient.connect(handle.port);
  await c.subscribe(['good', 'bad']);
  const arrivals: number[] = [];
  c.ws.on('message', (d) => {
    if (d.toString().startsWith('{"type":"caption","stream":"good"')) arrivals.push(Date.now());
  });
  await c.waitFor(
    (m) => m.filter((x) => x.type === 'caption' && x.stream === 'good').length >= 8 && m.filter((x) => x.stream === 'bad' && x.state === 'reconnecting').length >= 3,
    20_000,
    '8 good captions and 3 bad reconnects',
  );
  // The bad stream: reported on that stream only, with ffmpeg's reason, and retried.
  const badStatus = c.of('status', 'bad').filter((s) => s.state === 'reconnecting');
  expect(badStatus[0]!.reason).toMatch(/ffmpeg exited.*; retrying in \d+\.\d s \(retry 1\)/);
  expect(c.of('caption', 'bad')).toEqual([]);
  expect(c.of('status', 'good').every((s) => s.state === 'connecting' || s.state === 'live')).toBe(true);
  // The good stream never noticed: consecutive frames at its 2 fps cadence.
  const frames = c.of('caption', 'good').map((m) => m.frame as number);
  for (let i = 1; i < frames.length; i++) expect(frames[i]).toBe(frames[i - 1]! + 1);
  for (let i = 1; i < arrivals.length; i++) expect(arrivals[i]! - arrivals[i - 1]!).toBeLessThan(1500);
  expect(c.of('caption', 'good')[0]!.text).toMatch(/^good frame \d+ mean \d+,\d+,\d+$/);

  const ready = await getJson(`http://127.0.0.1:${handle.port}/readyz`);
  expect(ready.status).toBe(200);
  const states = Object.fromEntries((ready.body.streams as Array<{ id: string; state: string }>).map((s) => [s.id, s.state]));
  expect(states.good).toBe('live');
  expect(['reconnecting', 'connecting']).toContain(states.bad);

  const metrics = await fetch(`http://127.0.0.1:${handle.port}/metrics`).then((r) => r.text());
  expect(Number(/casa_live_stream_reconnects_total\{stream="bad"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(3);
  expect(metrics).not.toMatch(/casa_live_stream_reconnects_total\{stream="good"\} [1-9]/);
  expect(Number(/casa_live_frames_in_total\{stream="good"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(8);
  expect(Number(/casa_live_frame_to_caption_latency_seconds_count\{stream="good"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(8);
  expect(metrics).toMatch(/casa_live_stream_state\{stream="good",state="live"\} 1/);
  await c.close();
});

it('stops every ffmpeg child when the server closes', async () => {
  const history = await getJson(`http://127.0.0.1:${handle.port}/v1/streams/good/captions?after=0&limit=5`, TOKEN);
  expect(history.status).toBe(200);
  expect(history.body.events.length).toBe(5);
  await handle.close();
  const alive = (factory.pids as number[]).filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  expect(alive).toEqual([]);
});

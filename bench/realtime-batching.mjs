#!/usr/bin/env node
// node bench/realtime-batching.mjs [--streams 100,160,220] [--frame-gather 0,40,80] [--seconds 12]
//                                  [--bundle models/casa-tiny] [--out FILE]
// The batched engine under real-time load, without ingest: N caption sessions on one loaded
// model, each given a noise frame every 500 ms (2 fps) at its own random phase, exactly 5
// tokens per frame (EOS masked, as B3 and B7 do). A frame that comes while its session is
// still busy is dropped (newest wins, as the pipeline does). For each stream count and
// `batch.frameGatherMs`: frames/s captioned, drops, engine latency (frame given → caption)
// p50/p99, the process's CPU per frame, decoder rows per run and frames per vision run, over
// the run less its first 3 s. Builds nothing: run `npm run build` first.
// Writes bench/results/tmp/realtime-batching.json.
import path from 'node:path';
import { Model } from '../dist/engine.js';
import { arg, FRAMES as frames, measureGrid, ratio, root, round, SESSION, statsDelta, writeResult } from './engine-load-common.mjs';

const STREAMS = arg('streams', '100,160,220').split(',').map(Number);
const GATHER = arg('frame-gather', '0,40,80').split(',').map(Number);
const SECONDS = Number(arg('seconds', '12'));
const WARMUP_S = 3;
const BUNDLE = path.resolve(root, arg('bundle', 'models/casa-tiny'));
const OUT = path.resolve(root, arg('out', 'bench/results/tmp/realtime-batching.json'));
const sleepUntil = (t) => new Promise((r) => setTimeout(r, Math.max(0, t - performance.now())));

/** One stream: a frame every 500 ms from `start + phase` until `end`; each frame captioned unless the last is still running. */
async function stream(s, k, start, end, tally) {
  const phase = Math.random() * 500;
  let running = Promise.resolve();
  let busy = false;
  for (let i = 0; start + phase + i * 500 < end; i++) {
    await sleepUntil(start + phase + i * 500);
    const counted = performance.now() >= start + WARMUP_S * 1000;
    if (busy) {
      if (counted) tally.dropped++;
      continue;
    }
    busy = true;
    const at = performance.now();
    running = s.caption(frames[(k + i) % frames.length]).then(() => {
      busy = false;
      if (counted) tally.latency.push(performance.now() - at);
    });
  }
  await running;
}

async function measure(n, frameGatherMs) {
  const model = await Model.load(BUNDLE, { batch: { frameGatherMs } });
  const sessions = await Promise.all(Array.from({ length: n }, () => model.openSession(SESSION)));
  await Promise.all(sessions.map((s, k) => s.caption(frames[k % frames.length])));
  const tally = { latency: [], dropped: 0 };
  const start = performance.now() + 200;
  const end = start + SECONDS * 1000;
  let cpu0;
  let b0;
  setTimeout(() => {
    cpu0 = process.cpuUsage();
    b0 = model.batchStats();
  }, 200 + WARMUP_S * 1000);
  await Promise.all(sessions.map((s, k) => stream(s, k, start, end, tally)));
  const cpu = process.cpuUsage(cpu0);
  const b1 = model.batchStats();
  for (const s of sessions) s.close();
  await model.release();
  const lat = tally.latency.sort((a, b) => a - b);
  const q = (p) => Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? NaN);
  const window = SECONDS - WARMUP_S;
  const d = statsDelta(b0, b1);
  return {
    streams: n,
    frameGatherMs,
    framesPerSecond: round(lat.length / window, 1),
    expectedFramesPerSecond: n * 2,
    dropped: tally.dropped,
    latencyP50Ms: q(0.5),
    latencyP99Ms: q(0.99),
    cpuMsPerFrame: ratio((cpu.user + cpu.system) / 1000, lat.length, 2),
    rowsPerDecoderRun: ratio(d.decoderRows, d.decoderRuns),
    framesPerVisionRun: ratio(d.frames, d.frameRuns),
  };
}

const results = await measureGrid(STREAMS, GATHER, measure);
writeResult(OUT, 'realtime-batching (bench/realtime-batching.mjs)', BUNDLE, { settings: { seconds: SECONDS, warmupS: WARMUP_S, session: SESSION }, results });

#!/usr/bin/env node
// node bench/one-stream-latency.mjs [--frames 100] [--repeats 2] [--gap 20] [--bundle models/casa-tiny]
//                                   [--dist dist] [--out FILE]
// One stream, engine only (no ingest): when each event of a frame reaches the caller — the
// tokens one by one, the caption, the end of the frame (its closing step fed) — in ms from the
// frame's start, median and p90 over the frames after 10 warm-up ones, for the unbatched
// engine (graphs on the calling thread) and the batched one (graphs in an inference worker),
// alternated `--repeats` times. A frame every `--gap` ms plus its own time (the threads go
// idle between frames, as they do at 2 fps). `--dist` measures another build of the engine
// (e.g. a worktree's dist, to compare commits). Builds nothing: run `npm run build` first.
// Writes bench/results/tmp/one-stream-latency.json.
import path from 'node:path';
import { arg, DIST, distModule, FRAMES, root, round, SESSION, writeResult } from './engine-load-common.mjs';

const FRAME_COUNT = Number(arg('frames', '100'));
const REPEATS = Number(arg('repeats', '2'));
const GAP_MS = Number(arg('gap', '20'));
const BUNDLE = path.resolve(root, arg('bundle', 'models/casa-tiny'));
const OUT = path.resolve(root, arg('out', 'bench/results/tmp/one-stream-latency.json'));
const ENGINES = { unbatched: { batch: false }, batched: {} };
const WARMUP = 10;

const { Model } = await distModule('engine.js');

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Per frame: ms from its start to each token event, the caption and the frame's end. */
async function measure(engine) {
  const model = await Model.load(BUNDLE, ENGINES[engine]);
  const session = await model.openSession({ ...SESSION, tokenGranularity: 'piece' });
  const frames = [];
  for (let i = 0; i < FRAME_COUNT + WARMUP; i++) {
    const frame = { ...FRAMES[i % FRAMES.length], index: i, receivedAt: Date.now() };
    const t0 = performance.now();
    const tokens = [];
    let caption = 0;
    for await (const ev of session.captionFrame(frame)) {
      if (ev.type === 'token') tokens.push(performance.now() - t0);
      else if (ev.type === 'caption') caption = performance.now() - t0;
    }
    if (i >= WARMUP) frames.push({ tokens, caption, end: performance.now() - t0 });
    await new Promise((resolve) => setTimeout(resolve, GAP_MS));
  }
  session.close();
  await model.release();
  const stat = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return { p50: round(quantile(s, 0.5), 2), p90: round(quantile(s, 0.9), 2) };
  };
  const tokenCount = Math.min(...frames.map((f) => f.tokens.length));
  return {
    engine,
    frames: frames.length,
    tokensMs: Array.from({ length: tokenCount }, (_, k) => stat(frames.map((f) => f.tokens[k]))),
    captionMs: stat(frames.map((f) => f.caption)),
    frameEndMs: stat(frames.map((f) => f.end)),
  };
}

const runs = [];
for (let r = 0; r < REPEATS; r++) {
  for (const engine of r % 2 === 0 ? Object.keys(ENGINES) : Object.keys(ENGINES).reverse()) {
    const m = await measure(engine);
    runs.push(m);
    console.log(
      `${engine.padEnd(9)} tokens p50 ${m.tokensMs.map((t) => t.p50).join(' ')} | caption p50 ${m.captionMs.p50} p90 ${m.captionMs.p90} | frame end p50 ${m.frameEndMs.p50} ms`,
    );
  }
}
writeResult(OUT, 'one-stream-latency (bench/one-stream-latency.mjs)', BUNDLE, {
  settings: { frames: FRAME_COUNT, warmup: WARMUP, repeats: REPEATS, gapMs: GAP_MS, dist: path.relative(root, DIST), session: SESSION },
  runs,
});

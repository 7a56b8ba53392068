#!/usr/bin/env node
// node bench/draft-acceptance.mjs [--frames 200] [--noise] [--bundle models/casa-tiny] [--out FILE]
// Would speculative decoding with the previous frame's caption as the draft (prompt-lookup
// drafting) save decoder runs? One stream captions the long-stream fixture's frames
// (test/fixtures/long-stream, the procedural world at 2 fps; `--noise`: the benchmarks' 16
// noise frames instead) with the benchmarks' session settings (greedy, exactly 5 tokens per
// frame), on the unbatched engine; for each frame, how many of its tokens match the previous
// frame's from the start — the draft tokens one verifying run would accept. Tokens are
// compared by their text pieces. Builds nothing: run `npm run build` first. Writes
// bench/results/tmp/draft-acceptance.json.
import path from 'node:path';
import { arg, distModule, FRAMES, root, round, SESSION, writeResult } from './engine-load-common.mjs';

const { Model } = await distModule('engine.js');
const { readRawFrames } = await distModule('harness/long-stream.js');
const NOISE = process.argv.includes('--noise');
const BUNDLE = path.resolve(root, arg('bundle', 'models/casa-tiny'));
const OUT = path.resolve(root, arg('out', 'bench/results/tmp/draft-acceptance.json'));
const COUNT = Number(arg('frames', '200'));
const WORLD = path.join(root, 'test', 'fixtures', 'long-stream', 'frames.rgb.gz');

const model = await Model.load(BUNDLE, { batch: false });
const { width, height } = model.manifest.image;

/** The frames' rgb24 pictures: the fixture's (at the model's size), or the noise frames in turn. */
async function* pictures() {
  if (NOISE) for (let i = 0; ; i++) yield FRAMES[i % FRAMES.length];
  else for await (const rgb of readRawFrames(WORLD, width * height * 3)) yield { rgb, width, height };
}

const session = await model.openSession({ ...SESSION, tokenGranularity: 'piece' });
const captions = [];
for await (const picture of pictures()) {
  if (captions.length === COUNT) break;
  const i = captions.length;
  const pieces = [];
  const frame = { index: i, ptsSeconds: i / 2, receivedAt: Date.now(), width: picture.width, height: picture.height, rgb: picture.rgb };
  for await (const ev of session.captionFrame(frame)) if (ev.type === 'token') pieces.push(ev.text);
  captions.push(pieces);
}
session.close();
await model.release();

const accepted = captions.slice(1).map((pieces, i) => {
  const prev = captions[i];
  let k = 0;
  while (k < pieces.length && pieces[k] === prev[k]) k++;
  return k;
});
const histogram = {};
for (const k of accepted) histogram[k] = (histogram[k] ?? 0) + 1;
const mean = accepted.reduce((a, b) => a + b, 0) / Math.max(1, accepted.length);
console.log(`${NOISE ? 'noise frames' : 'long-stream fixture'}: ${accepted.length} frames, draft tokens accepted per frame ${JSON.stringify(histogram)}, mean ${round(mean, 2)} of ${SESSION.maxNewTokensPerFrame}`);
writeResult(OUT, 'draft-acceptance (bench/draft-acceptance.mjs)', BUNDLE, {
  frames: NOISE ? 'noise' : 'test/fixtures/long-stream',
  count: accepted.length,
  acceptedHistogram: histogram,
  meanAccepted: round(mean, 3),
  sample: captions.slice(0, 8).map((p) => p.join('')),
});

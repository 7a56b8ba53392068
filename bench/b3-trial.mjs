#!/usr/bin/env node
// node bench/b3-trial.mjs [--streams 176] [--measure 20] [--rounds 1] [--nice 10]
//                         [--variants '{"NAME": LOAD_OPTIONS, …}'] [--out FILE]
// B3 trials one at a time, for comparing engine settings at one load: each trial is exactly
// one of the B3 suite's (the same live server and clip, the same ffmpeg decode options, 6 s
// of warm-up, pass = p99 frame→caption ≤ 500 ms and no frame dropped), at `--streams`
// streams for `--measure` seconds. With `--variants` (load options per name, e.g.
// '{"80": {"batch": {"frameGatherMs": 80}}, "120": {"batch": {"frameGatherMs": 120}}}') the
// variants run in turn, their order swapped every round, `--rounds` times: the machine's
// speed drifts between minutes, so compare alternated rounds, never one trial against
// another. `--nice` sets decode.nice of the ffmpeg children (B3 uses 10). Builds nothing: run
// `npm run build` first. Writes bench/results/tmp/b3-trial.json.
import path from 'node:path';
import { arg, distModule, root, writeResult } from './engine-load-common.mjs';

const { makeContext } = await distModule('bench/context.js');
const { defaultBundles } = await distModule('bench/index.js');
const { b3Params, runTrial } = await distModule('bench/suites/b3.js');
const { startLive } = await distModule('bench/suites/b3-ingest.js');

const STREAMS = Number(arg('streams', '176'));
const MEASURE_S = Number(arg('measure', '20'));
const ROUNDS = Number(arg('rounds', '1'));
const NICE = Number(arg('nice', '10'));
const VARIANTS = JSON.parse(arg('variants', '{"default": {}}'));
const OUT = path.resolve(root, arg('out', 'bench/results/tmp/b3-trial.json'));

const bundles = defaultBundles(root);
const log = (line) => console.error(line);
const ctx = makeContext({ quick: false, suites: ['b3'], outDir: path.dirname(OUT), casa: bundles.casa, insertion: bundles.insertion, log, root, command: 'bench/b3-trial.mjs' }, {});
const p = b3Params(false);
const clip = await ctx.clip({ ...p.clip, seconds: p.liveSeconds, name: 'live-clip', format: 'ts' });
const live = await startLive(ctx, clip, 'live');
const input = { live: live.url, decode: { ...p.decodeOptions, nice: NICE } };
const names = Object.keys(VARIANTS);
const trials = [];
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of r % 2 === 0 ? names : [...names].reverse()) {
      const t = await runTrial(ctx, input, STREAMS, { measureS: MEASURE_S, warmupS: p.warmupS, graceS: p.graceS, load: VARIANTS[name] }, 'single');
      const row = { round: r + 1, variant: name, pass: t.pass, p50Ms: t.captionMs.p50, p99Ms: t.captionMs.p99, deliveryP50Ms: t.deliveryMs.p50, deliveryP99Ms: t.deliveryMs.p99, liveP99Ms: t.liveToCaptionMs.p99, dropped: t.dropped, nodeCpuPercent: t.nodeCpuPercent, machineCpuPercent: t.machineCpuPercent, eventLoopDelayP99Ms: t.eventLoopDelayP99Ms, reasons: t.reasons };
      console.log(JSON.stringify(row));
      trials.push(row);
    }
  }
} finally {
  await live.stop();
}
writeResult(OUT, 'b3-trial (bench/b3-trial.mjs)', bundles.casa, { settings: { streams: STREAMS, measureS: MEASURE_S, rounds: ROUNDS, decode: input.decode, variants: VARIANTS }, trials });

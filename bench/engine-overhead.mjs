#!/usr/bin/env node
// npm run bench:overhead [-- --frames N]
// Per-token step overhead of the engine's TypeScript side: everything but onnxruntime's run
// (tensor building, KV cache append/eviction, sampling, detokenisation, event delivery).
// Writes bench/results/engine-overhead.json.
//
// 1. null-ORT: the real CaptionSession / backend / graph wrappers over stand-in onnxruntime
//    sessions that return preallocated outputs instantly, so every microsecond measured is
//    ours. The marginal cost per decode step is the slope between 12 and 2 tokens per frame.
// 2. real model: the dev bundle (and models/casa-tiny when present) end to end, with the
//    time inside onnxruntime's run subtracted.
// 3. components: KV append at a full cache, one eviction, the sampler (342 and 151,936-entry
//    vocabularies), the detokenizer.
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from 'onnxruntime-node';
import { loadModel } from '../dist/engine.js';
import { loadBundle, releaseBundle } from '../dist/model/bundle.js';
import { CasaDecoderGraph, CasaKvGraph, VisionGraph, newRunTimer } from '../dist/model/graphs.js';
import { KvStore, TextKvCache } from '../dist/model/kv-cache.js';
import { Preprocessor } from '../dist/model/preprocess.js';
import { inverseFrequencies } from '../dist/model/rope.js';
import { CasaBackend } from '../dist/session/casa-backend.js';
import { frameTextTokens, openCaptionSession, resolveSessionOptions } from '../dist/session/caption-session.js';
import { StreamDetokenizer } from '../dist/session/detokenizer.js';
import { Sampler } from '../dist/session/sampler.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEV = path.join(root, 'test', 'fixtures', 'bundles', 'dev-casa');
const argFrames = process.argv.indexOf('--frames');
const FRAMES = argFrames > 0 ? Number(process.argv[argFrames + 1]) : 400;

function noiseFrame(index, w = 64, h = 64) {
  const rgb = Buffer.allocUnsafe(w * h * 3);
  let x = index + 1;
  for (let i = 0; i < rgb.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    rgb[i] = x >>> 24;
  }
  return { index, ptsSeconds: index / 2, receivedAt: Date.now(), width: w, height: h, rgb };
}

const us = (ms) => Math.round(ms * 1000 * 100) / 100;

/** Stand-in onnxruntime sessions: preallocated outputs per token count, no work. */
function fakeSessions(manifest) {
  const { layers: L, kvHeads: H, headDim: Dh, hiddenSize: D, vocabSize: V, casaLayers } = manifest.decoder;
  const C = casaLayers.length;
  const N = manifest.image.tokensPerFrame;
  const logitsRow = new Float32Array(V);
  for (let i = 0; i < V; i++) logitsRow[i] = Math.sin(i * 12.9898) * 4; // fixed, EOS never the argmax
  logitsRow[manifest.tokens.eos] = -50;
  const cache = new Map();
  const outputs = (T) => {
    let o = cache.get(T);
    if (!o) {
      const logits = new Float32Array(T * V);
      for (let t = 0; t < T; t++) logits.set(logitsRow, t * V);
      const kv = (n) => Float32Array.from({ length: n }, (_, i) => Math.cos(i));
      o = {
        logits: new Tensor('float32', logits, [1, T, V]),
        new_keys: new Tensor('float32', kv(L * H * T * Dh), [L, 1, H, T, Dh]),
        new_values: new Tensor('float32', kv(L * H * T * Dh), [L, 1, H, T, Dh]),
        new_window_keys: new Tensor('float32', kv(C * H * T * Dh), [C, 1, H, T, Dh]),
        new_window_values: new Tensor('float32', kv(C * H * T * Dh), [C, 1, H, T, Dh]),
      };
      cache.set(T, o);
    }
    return o;
  };
  const embeds = new Tensor('float32', new Float32Array(N * D), [1, N, D]);
  const imageKV = {
    image_keys: new Tensor('float32', new Float32Array(C * H * N * Dh), [C, 1, H, N, Dh]),
    image_values: new Tensor('float32', new Float32Array(C * H * N * Dh), [C, 1, H, N, Dh]),
  };
  return {
    vision: { run: async () => ({ image_embeds: embeds }) },
    casaKv: { run: async () => imageKV },
    decoder: { run: async (feeds) => outputs(feeds.input_ids.dims[1]) },
  };
}

async function nullOrtRun(bundle, maxNew, frames, sampling) {
  const m = bundle.manifest;
  const fake = fakeSessions(m);
  const opts = resolveSessionOptions(m, bundle.promptIds.length, bundle.frameOpeningIds.length, {
    maxNewTokensPerFrame: maxNew,
    seed: 1,
    ...(sampling ? { temperature: 0.4, topK: 256 } : { temperature: 0 }),
  });
  const timer = newRunTimer();
  const backend = new CasaBackend(
    m,
    {
      fusion: 'casa',
      vision: new VisionGraph(fake.vision, m.image.width, m.image.height),
      casaKv: new CasaKvGraph(fake.casaKv),
      decoder: new CasaDecoderGraph(fake.decoder),
    },
    { maxTokens: opts.maxContextTokens, sinkTokens: opts.sinkTokens, evictChunk: opts.evictChunk },
    inverseFrequencies(m.decoder.headDim, m.decoder.ropeTheta),
    frameTextTokens(bundle.frameOpeningIds.length, maxNew),
    timer,
  );
  const session = await openCaptionSession({
    manifest: m,
    tokenizer: bundle.tokenizer,
    preprocessor: new Preprocessor(m.image),
    backend,
    promptIds: bundle.promptIds,
    frameOpeningIds: bundle.frameOpeningIds,
    options: opts,
    timer,
  });
  const inputs = Array.from({ length: 16 }, (_, i) => noiseFrame(i));
  for (let i = 0; i < 50; i++) await session.caption(inputs[i % 16]); // warm-up (JIT)
  const before = session.stats();
  const t0 = performance.now();
  let events = 0;
  for (let i = 0; i < frames; i++) {
    for await (const ev of session.captionFrame(inputs[i % 16])) events += ev.type === 'token' ? 1 : 0;
  }
  const ms = performance.now() - t0;
  const st = session.stats();
  session.close();
  const steps = st.graphRuns - before.graphRuns - 2 * frames; // decoder runs (vision and casa_kv excluded)
  return { frames, maxNew, msPerFrame: ms / frames, decoderStepsPerFrame: steps / frames, evictions: st.evictions - before.evictions, tokenEvents: events };
}

async function realRun(dir, frames, sampling, load) {
  const model = await loadModel(dir, load);
  const s = await model.openSession({ seed: 1, ...(sampling ? { temperature: 0.4, topK: 256 } : { temperature: 0 }) });
  for (let i = 0; i < 20; i++) await s.caption(noiseFrame(i));
  const b = s.stats();
  const t0 = performance.now();
  for (let i = 0; i < frames; i++) await s.caption(noiseFrame(i % 64));
  const wall = performance.now() - t0;
  const st = s.stats();
  s.close();
  await model.release();
  const runs = st.graphRuns - b.graphRuns;
  const steps = runs - 2 * frames;
  const frameMs = st.frameMs - b.frameMs;
  const ortMs = st.ortMs - b.ortMs;
  return {
    bundle: path.relative(root, dir),
    engine: load.batch === false ? 'unbatched' : 'batched (one stream: the wait is the round trip to the worker)',
    sampling: sampling ? 'temperature 0.4, top-k 256' : 'greedy',
    frames,
    decoderStepsPerFrame: steps / frames,
    wallMsPerFrame: wall / frames,
    ortMsPerFrame: ortMs / frames,
    ortUsPerRun: us(ortMs / runs),
    engineOverheadUsPerDecoderStep: us((frameMs - ortMs) / steps),
    engineOverheadShare: (frameMs - ortMs) / frameMs,
    evictions: st.evictions - b.evictions,
  };
}

function timeIt(n, fn) {
  for (let i = 0; i < Math.min(n, 200); i++) fn(i);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  return us((performance.now() - t0) / n);
}

function components(bundle) {
  const m = bundle.manifest;
  const { layers: L, kvHeads: H, headDim: Dh } = m.decoder;
  const shape = { layers: L, kvHeads: H, headDim: Dh };
  const step = new Float32Array(L * H * Dh).fill(0.5);
  const out = {};
  // append one token to a cache holding 200..250 tokens (the cap is 256)
  const store = new KvStore(shape, 256);
  const bulk = new Float32Array(L * H * 200 * Dh).fill(0.5);
  const refill = () => {
    store.clear();
    store.append(bulk, bulk, 200);
  };
  const base = timeIt(2000, refill);
  out.kvAppendOneTokenAt200to250Us =
    Math.round(((timeIt(2000, () => {
      refill();
      for (let i = 0; i < 50; i++) store.append(step, step, 1);
    }) - base) / 50) * 100) / 100;
  // one eviction round of 64 tokens with re-rotation (cap 256, sink 80)
  const inv = inverseFrequencies(Dh, m.decoder.ropeTheta);
  out.evict64WithRerotationUs = timeIt(2000, () => {
    const c = new TextKvCache(shape, { maxTokens: 256, sinkTokens: 80, evictChunk: 64 }, inv);
    const fill = new Float32Array(L * H * 256 * Dh).fill(0.25);
    c.append(fill, fill, 256);
    c.store.evict(80, 64, inv);
  }) - timeIt(2000, () => {
    const c = new TextKvCache(shape, { maxTokens: 256, sinkTokens: 80, evictChunk: 64 }, inv);
    const fill = new Float32Array(L * H * 256 * Dh).fill(0.25);
    c.append(fill, fill, 256);
  });
  for (const V of [m.decoder.vocabSize, 151936]) {
    const logits = Float32Array.from({ length: V }, (_, i) => Math.sin(i * 0.37) * 5);
    const settings = { temperature: 0, topK: 256, repetitionPenalty: 1.15, repetitionPenaltyDecay: 0.99, repetitionCountClamp: 5, penaltyIgnore: [38, 3], eosBias: 1, eosId: 3, seed: 1 };
    const greedy = new Sampler(V, settings);
    const sampling = new Sampler(V, { ...settings, temperature: 0.4 });
    for (let i = 0; i < 40; i++) sampling.observe((i * 7919) % V); // some penalised tokens
    const n = V > 1000 ? 300 : 20000;
    out[`samplerGreedyV${V}Us`] = timeIt(n, () => greedy.sample(logits));
    out[`samplerT0.4TopK256V${V}Us`] = timeIt(n, () => {
      const t = sampling.sample(logits);
      sampling.observe(t);
    });
  }
  const detok = new StreamDetokenizer(bundle.tokenizer, 'word');
  const ids = bundle.tokenizer.encode(' a big yellow triangle enters from the bottom');
  out.detokenizerPushUs = timeIt(200000, (i) => {
    detok.push(ids[i % ids.length]);
    if (i % ids.length === ids.length - 1) detok.flush();
  });
  return out;
}

const bundle = await loadBundle(DEV);
const nullOrt = {};
for (const sampling of [false, true]) {
  const long = await nullOrtRun(bundle, 12, FRAMES, sampling);
  const short = await nullOrtRun(bundle, 2, FRAMES, sampling);
  const perStep = (long.msPerFrame - short.msPerFrame) / (long.decoderStepsPerFrame - short.decoderStepsPerFrame);
  const perFrameFixed = short.msPerFrame - short.decoderStepsPerFrame * perStep;
  nullOrt[sampling ? 'sampling' : 'greedy'] = {
    perDecodeStepUs: us(perStep),
    perFrameFixedUs: us(perFrameFixed),
    at12TokensPerFrame: { ...long, usPerFrame: us(long.msPerFrame) },
    at2TokensPerFrame: { ...short, usPerFrame: us(short.msPerFrame) },
  };
}
await releaseBundle(bundle);

const real = [];
for (const dir of [DEV, path.join(root, 'models', 'casa-tiny')].filter((d) => existsSync(path.join(d, 'casa.json')))) {
  for (const load of [{ batch: false }, {}]) {
    real.push(await realRun(dir, Math.max(50, Math.floor(FRAMES / 2)), false, load));
    real.push(await realRun(dir, Math.max(50, Math.floor(FRAMES / 2)), true, load));
  }
}

const result = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model,
  cores: os.cpus().length,
  loadAverageAtStart: os.loadavg(),
  notes: [
    'nullOrt: CaptionSession + CasaBackend + graph wrappers over stand-in onnxruntime sessions that return preallocated outputs; per-decode-step cost = slope between 12 and 2 tokens per frame; includes tensor building, cache append (cap 256, evictions), sampling, detokenisation and async-iterator delivery.',
    'real: end to end on the bundle, engineOverhead = (frame time − time awaiting onnxruntime run) / decoder steps; the await includes onnxruntime-node\'s setImmediate hop. Unbatched: runs on the main thread; batched: the await is the round trip to the inference worker, so the overhead is the main thread\'s own work per step.',
    'components: single operations in a tight loop.',
  ],
  nullOrt,
  real,
  components: components(bundle),
};
mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
const file = path.join(root, 'bench', 'results', 'engine-overhead.json');
writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
console.log(`engine overhead per decode step (null ORT): greedy ${nullOrt.greedy.perDecodeStepUs} µs, sampling ${nullOrt.sampling.perDecodeStepUs} µs; per frame fixed: ${nullOrt.greedy.perFrameFixedUs} µs`);
for (const r of real) {
  console.log(
    `${r.bundle} ${r.engine.split(' ')[0]} (${r.sampling}): ${r.wallMsPerFrame.toFixed(2)} ms/frame, onnxruntime ${r.ortUsPerRun} µs/run, engine overhead ${r.engineOverheadUsPerDecoderStep} µs/decoder step (${(r.engineOverheadShare * 100).toFixed(1)}% of frame time)`,
  );
}
console.log('components (µs):', JSON.stringify(result.components));
console.log(`wrote ${path.relative(root, file)}`);

#!/usr/bin/env node
// node bench/decoder-rows.mjs [--rows 1,4,16,32,64] [--past 216] [--tokens 1] [--runs 150]
//                             [--parallel 1] [--bundle models/casa-tiny] [--dist dist] [--out FILE]
// What one batched decoder run costs against its number of rows: the bundle's decoder.onnx
// opened as the engine opens it (the engine's session options, one intra-op thread), rows of
// `--tokens` tokens over a self-attention cache of `--past` entries (the last 16 of them
// padding), the frame's image K/V and a window of 3 entries; median and p90 ms per run over
// `--runs` runs after 30 warm-up ones, and ms per row. `--parallel N` runs the same loop in N
// worker threads at once (each its own session), to see what runs in parallel cost each other.
// Engine only, no copies: what a run costs the inference worker, not a frame. Builds nothing:
// run `npm run build` first. Writes bench/results/tmp/decoder-rows.json.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { arg, DIST, root, round, writeResult } from './engine-load-common.mjs';

const opts = isMainThread
  ? {
      rows: arg('rows', '1,4,16,32,64').split(',').map(Number),
      past: Number(arg('past', '216')),
      tokens: Number(arg('tokens', '1')),
      runs: Number(arg('runs', '150')),
      parallel: Math.max(1, Number(arg('parallel', '1'))),
      bundle: path.resolve(root, arg('bundle', 'models/casa-tiny')),
      dist: DIST,
      out: path.resolve(root, arg('out', 'bench/results/tmp/decoder-rows.json')),
    }
  : workerData;
if (isMainThread) opts.sync = new SharedArrayBuffer(4);
const WARMUP = 30;
const WINDOW = { size: 8, length: 3 };
/** Entries of padding after each row's cache (the engine lays rows out with this headroom). */
const PADDING = 16;

/** B rows of one step: positions after `past − PADDING` cached entries, every cache filled with small finite values. */
function batchInput(dims, b, o) {
  const { layers, kvHeads, headDim, casaLayers, imageTokens } = dims;
  const cache = (blocks, size, length) => {
    const n = b * kvHeads * size * headDim;
    const block = () => Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.1);
    return {
      keys: Array.from({ length: blocks }, block),
      values: Array.from({ length: blocks }, block),
      size,
      lengths: BigInt64Array.from({ length: b }, () => BigInt(length)),
    };
  };
  const filled = (v) => BigInt64Array.from({ length: b * o.tokens }, () => BigInt(v));
  const length = Math.max(0, o.past - PADDING);
  return {
    rows: b,
    tokens: o.tokens,
    ids: filled(5),
    positions: filled(length),
    windowPositions: filled(WINDOW.length + 1),
    past: cache(layers, o.past, length),
    image: cache(casaLayers, imageTokens, imageTokens),
    window: cache(casaLayers, WINDOW.size, WINDOW.length),
  };
}

/** Waits until every thread has reached step `k` (the threads measure each row count together). */
function barrier(o, k) {
  const sync = new Int32Array(o.sync);
  Atomics.add(sync, 0, 1);
  for (let seen = Atomics.load(sync, 0); seen < o.parallel * (k + 1); seen = Atomics.load(sync, 0)) Atomics.wait(sync, 0, seen, 50);
}

/** This thread's measurements: per row count, ms per run. */
async function measure(o) {
  const { loadBundleMeta, openGraphs, releaseGraphs } = await import(pathToFileURL(path.join(o.dist, 'model', 'bundle.js')).href);
  const meta = loadBundleMeta(o.bundle);
  const graphs = await openGraphs(meta.manifest, meta.files);
  const d = meta.manifest.decoder;
  const dims = { layers: d.layers, kvHeads: d.kvHeads, headDim: d.headDim, casaLayers: d.casaLayers.length, imageTokens: meta.manifest.image.tokensPerFrame };
  const out = [];
  for (const [k, b] of o.rows.entries()) {
    const input = batchInput(dims, b, o);
    barrier(o, k);
    for (let i = 0; i < WARMUP; i++) await graphs.decoder.run(input);
    const ms = [];
    for (let i = 0; i < o.runs; i++) {
      const t0 = performance.now();
      await graphs.decoder.run(input);
      ms.push(performance.now() - t0);
    }
    ms.sort((x, y) => x - y);
    const p50 = ms[Math.floor(ms.length / 2)];
    out.push({ rows: b, p50Ms: round(p50, 3), p90Ms: round(ms[Math.floor(ms.length * 0.9)], 3), msPerRow: round(p50 / b, 4) });
  }
  await releaseGraphs(graphs);
  return out;
}

if (!isMainThread) {
  parentPort.postMessage(await measure(opts));
} else {
  const threads = Array.from(
    { length: opts.parallel },
    () =>
      new Promise((resolve, reject) => {
        const w = new Worker(new URL(import.meta.url), { workerData: opts });
        w.once('message', resolve);
        w.once('error', reject);
      }),
  );
  const perThread = await Promise.all(threads);
  for (const [i, rows] of perThread.entries()) {
    for (const r of rows) console.log(`thread ${i}: ${String(r.rows).padStart(3)} rows × ${opts.tokens} tokens, past ${opts.past}: p50 ${r.p50Ms} ms (p90 ${r.p90Ms}), ${r.msPerRow} ms per row`);
  }
  const { rows, past, tokens, runs, parallel } = opts;
  writeResult(opts.out, 'decoder-rows', opts.bundle, { options: { rows, past, tokens, runs, parallel }, perThread });
}

// Shared by the engine scripts in bench/ (batch-throughput, realtime-batching, one-stream-latency, …):
// the command line, the build measured (`--dist`), the sessions' settings (exactly 5 tokens per
// frame, EOS masked, as B2/B3/B7 do), noise frames, and how a result file is written.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The value after `--name` on the command line, else `fallback`. */
export function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

/** The build of the engine measured: `--dist DIR` (a changed copy of dist/, to compare builds), else dist/. */
export const DIST = path.resolve(root, arg('dist', 'dist'));

/** A module of that build, e.g. `await distModule('engine.js')`. */
export function distModule(file) {
  return import(pathToFileURL(path.join(DIST, file)).href);
}

export const SESSION = { temperature: 0, maxNewTokensPerFrame: 5, eosBias: -1e9, greedyProcessors: true, repetitionPenalty: 1, seed: 1 };

/** A 64×64 frame of deterministic noise. */
export function noiseFrame(index) {
  const rgb = Buffer.allocUnsafe(64 * 64 * 3);
  let x = index + 1;
  for (let i = 0; i < rgb.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    rgb[i] = x >>> 24;
  }
  return { index, ptsSeconds: index / 2, receivedAt: Date.now(), width: 64, height: 64, rgb };
}

export const FRAMES = Array.from({ length: 16 }, (_, i) => noiseFrame(i));

/** `x` rounded to `digits` decimals. */
export const round = (x, digits) => Math.round(x * 10 ** digits) / 10 ** digits;

/** `a ÷ b` (b counted as at least 1: a count over a window that may be empty), rounded. */
export const ratio = (a, b, digits = 1) => round(a / Math.max(1, b), digits);

/** What the batched engine's counters (Model.batchStats()) grew by between two readings. */
export function statsDelta(before, after) {
  const d = {};
  for (const k of ['decoderRuns', 'decoderRows', 'frameRuns', 'frames', 'busyMs', 'decoderMs', 'frameMs']) d[k] = after[k] - before[k];
  return d;
}

/** `measure(a, b)` for every `a` of `outer` and `b` of `inner`, in that order, each result printed as a JSON line; the results. */
export async function measureGrid(outer, inner, measure) {
  const results = [];
  for (const a of outer) {
    for (const b of inner) {
      const r = await measure(a, b);
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
  return results;
}

/** Writes `body` (with the bench name, bundle, time and machine) as JSON to `out`. */
export function writeResult(out, bench, bundle, body) {
  mkdirSync(path.dirname(out), { recursive: true });
  const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadAverage: os.loadavg() };
  writeFileSync(out, JSON.stringify({ bench, bundle: path.relative(root, bundle), measuredAt: new Date().toISOString(), machine, ...body }, null, 1));
  console.log(`wrote ${path.relative(root, out)}`);
}

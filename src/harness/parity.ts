/**
 * Parity harness (docs/model-format.md §fixtures): replays a bundle's scripted session
 * through the runtime's incremental path (preprocessing, vision, casa_kv, decoder steps
 * with explicit caches) and compares every step's logits with the PyTorch full-sequence
 * reference rows. Also checks the tokenizer reproduces the fixture's tokenization. With
 * batch fixtures (format version 2), streams of different lengths are replayed side by
 * side, through the same batched graph runs, and each is compared with its reference.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ModelError } from '../errors.js';
import { Model, type DecoderBackend, type LoadOptions } from '../engine.js';

export interface FixtureStep {
  kind: 'prompt' | 'frame' | 'token';
  ids: number[];
  frame?: number;
  pixels?: string;
}

export interface FixtureScript {
  width: number;
  height: number;
  vocabSize: number;
  textTokens: number;
  tolerance: number;
  steps: FixtureStep[];
  captions?: string[];
  tokenization?: { text: string; ids: number[] }[];
}

export interface ParityStepResult {
  step: number;
  kind: FixtureStep['kind'];
  tokens: number;
  maxAbsDiff: number;
}

export interface ParityResult {
  bundle: string;
  name: string;
  fusion: string;
  steps: number;
  textTokens: number;
  /** max |Δlogit| over every step and every vocabulary entry. */
  maxAbsDiff: number;
  /** Step with the largest difference. */
  worstStep: number;
  tolerance: number;
  tokenizationChecked: number;
  tokenizationMismatches: { text: string; expected: number[]; got: number[] }[];
  pass: boolean;
  perStep: ParityStepResult[];
}

export function readFixtureScript(bundleDir: string): FixtureScript {
  const file = path.join(bundleDir, 'fixtures', 'session.json');
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as FixtureScript;
  } catch (err) {
    throw new ModelError(`${file}: cannot read the parity fixtures (${(err as Error).message})`, { cause: err });
  }
}

function readLogits(file: string): Float32Array {
  const buf = readFileSync(file);
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return new Float32Array(copy.buffer, 0, Math.floor(buf.byteLength / 4));
}

/** float32 rows [textTokens, V] of the reference logits. */
export function readReferenceLogits(bundleDir: string): Float32Array {
  return readLogits(path.join(bundleDir, 'fixtures', 'logits.f32'));
}

export interface ParityOptions {
  /** A model already loaded from bundleDir (else it is loaded and released here). */
  model?: Model;
  load?: LoadOptions;
}

/** The per-step comparison of one scripted stream replayed through a backend. */
interface StreamReplay {
  perStep: ParityStepResult[];
  maxAbsDiff: number;
  worstStep: number;
  textTokens: number;
}

/**
 * Replays `steps` through `backend` and compares every step's logits with the reference
 * rows from `offset` on (float32 [rows, V]).
 */
async function replayStream(
  model: Model,
  backend: DecoderBackend,
  bundleDir: string,
  script: { width: number; height: number },
  steps: readonly FixtureStep[],
  reference: Float32Array,
  offset: number,
): Promise<StreamReplay> {
  const V = model.manifest.decoder.vocabSize;
  const pre = model.preprocessor();
  const perStep: ParityStepResult[] = [];
  let row = offset;
  let max = 0;
  let worst = -1;
  for (const [i, step] of steps.entries()) {
    let logits: Float32Array;
    if (step.kind === 'frame') {
      const rgb = readFileSync(path.join(bundleDir, 'fixtures', step.pixels ?? ''));
      const pixels = await pre.pixels({ width: script.width, height: script.height, rgb });
      logits = await backend.startFrame(pixels, step.ids);
    } else {
      logits = await backend.feedText(step.ids);
    }
    const t = step.ids.length;
    let stepMax = 0;
    for (let r = 0; r < t; r++) {
      for (let v = 0; v < V; v++) {
        const d = Math.abs((logits[r * V + v] as number) - (reference[(row + r) * V + v] as number));
        if (!(d <= stepMax)) stepMax = Number.isNaN(d) ? Infinity : d;
      }
    }
    row += t;
    perStep.push({ step: i, kind: step.kind, tokens: t, maxAbsDiff: stepMax });
    if (stepMax > max || worst < 0) {
      max = Math.max(max, stepMax);
      if (stepMax >= max) worst = i;
    }
  }
  return { perStep, maxAbsDiff: max, worstStep: worst, textTokens: row - offset };
}

export async function runParity(bundleDir: string, opts: ParityOptions = {}): Promise<ParityResult> {
  const script = readFixtureScript(bundleDir);
  const reference = readReferenceLogits(bundleDir);
  const model = opts.model ?? (await Model.load(bundleDir, opts.load));
  try {
    const V = model.manifest.decoder.vocabSize;
    if (script.vocabSize !== V) throw new ModelError(`${bundleDir}: fixtures are for vocabulary ${script.vocabSize}, the bundle has ${V}`);
    if (reference.length !== script.textTokens * V) {
      throw new ModelError(`${bundleDir}/fixtures/logits.f32: ${reference.length} floats, expected ${script.textTokens} x ${V}`);
    }
    const backend = model.openBackend({ policy: { maxTokens: Infinity }, windowCapacity: script.textTokens });
    const r = await replayStream(model, backend, bundleDir, script, script.steps, reference, 0);
    backend.close();
    const mismatches: ParityResult['tokenizationMismatches'] = [];
    for (const { text, ids } of script.tokenization ?? []) {
      const got = model.encode(text);
      if (got.length !== ids.length || got.some((v, k) => v !== ids[k])) mismatches.push({ text, expected: ids, got });
    }
    const tolerance = script.tolerance ?? 1e-4;
    return {
      bundle: bundleDir,
      name: model.manifest.name,
      fusion: model.manifest.fusion,
      steps: script.steps.length,
      textTokens: r.textTokens,
      maxAbsDiff: r.maxAbsDiff,
      worstStep: r.worstStep,
      tolerance,
      tokenizationChecked: script.tokenization?.length ?? 0,
      tokenizationMismatches: mismatches,
      pass: r.maxAbsDiff <= tolerance && mismatches.length === 0 && r.textTokens === script.textTokens,
      perStep: r.perStep,
    };
  } finally {
    if (!opts.model) await model.release();
  }
}

/** fixtures/batch.json (format version 2 CASA bundles): streams of different lengths. */
export interface BatchFixtureScript {
  width: number;
  height: number;
  vocabSize: number;
  tolerance: number;
  textTokens: number;
  streams: { seed: number; logitsOffset: number; textTokens: number; steps: FixtureStep[] }[];
}

export interface BatchParityResult {
  bundle: string;
  /** Streams replayed side by side (the batch fixtures' and session.json's). */
  streams: number;
  /** max |Δlogit| per stream, and over all. */
  perStream: number[];
  maxAbsDiff: number;
  tolerance: number;
  /** Most streams the engine put in one decoder run (1 when unbatched). */
  maxRows: number;
  pass: boolean;
}

/** Whether the bundle has batch fixtures (fixtures/batch.json). */
export function hasBatchFixtures(bundleDir: string): boolean {
  return existsSync(path.join(bundleDir, 'fixtures', 'batch.json'));
}

/**
 * Replays the batch fixtures' streams and session.json's side by side, so that the engine
 * runs their steps in the same graph runs, and compares each stream's logits with its
 * PyTorch reference rows.
 */
export async function runBatchParity(bundleDir: string, opts: ParityOptions = {}): Promise<BatchParityResult> {
  const file = path.join(bundleDir, 'fixtures', 'batch.json');
  let batch: BatchFixtureScript;
  try {
    batch = JSON.parse(readFileSync(file, 'utf8')) as BatchFixtureScript;
  } catch (err) {
    throw new ModelError(`${file}: cannot read the batch fixtures (${(err as Error).message})`, { cause: err });
  }
  const single = readFixtureScript(bundleDir);
  const batchRows = readLogits(path.join(bundleDir, 'fixtures', 'batch-logits.f32'));
  const singleRows = readReferenceLogits(bundleDir);
  const model = opts.model ?? (await Model.load(bundleDir, opts.load));
  try {
    const streams = [
      { steps: single.steps, rows: singleRows, offset: 0, tokens: single.textTokens },
      ...batch.streams.map((s) => ({ steps: s.steps, rows: batchRows, offset: s.logitsOffset, tokens: s.textTokens })),
    ];
    const results = await Promise.all(
      streams.map(async (s) => {
        const backend = model.openBackend({ policy: { maxTokens: Infinity }, windowCapacity: s.tokens });
        try {
          return await replayStream(model, backend, bundleDir, batch, s.steps, s.rows, s.offset);
        } finally {
          backend.close();
        }
      }),
    );
    const perStream = results.map((r) => r.maxAbsDiff);
    const maxAbsDiff = Math.max(...perStream);
    const tolerance = batch.tolerance ?? 1e-4;
    const complete = results.every((r, i) => r.textTokens === (streams[i] as { tokens: number }).tokens);
    return {
      bundle: bundleDir,
      streams: streams.length,
      perStream,
      maxAbsDiff,
      tolerance,
      maxRows: model.batchStats()?.maxRows ?? 1,
      pass: maxAbsDiff <= tolerance && complete,
    };
  } finally {
    if (!opts.model) await model.release();
  }
}

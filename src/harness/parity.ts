/**
 * Parity harness (docs/model-format.md §fixtures): replays a bundle's scripted session
 * through the runtime's incremental path (preprocessing, vision, casa_kv, decoder steps
 * with explicit caches) and compares every step's logits with the PyTorch full-sequence
 * reference rows. Also checks the tokenizer reproduces the fixture's tokenization.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ModelError } from '../errors.js';
import { Model, type LoadOptions } from '../engine.js';

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

/** float32 rows [textTokens, V] of the reference logits. */
export function readReferenceLogits(bundleDir: string): Float32Array {
  const buf = readFileSync(path.join(bundleDir, 'fixtures', 'logits.f32'));
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return new Float32Array(copy.buffer, 0, Math.floor(buf.byteLength / 4));
}

export interface ParityOptions {
  /** A model already loaded from bundleDir (else it is loaded and released here). */
  model?: Model;
  load?: LoadOptions;
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
    const pre = model.preprocessor();
    const perStep: ParityStepResult[] = [];
    let row = 0;
    let max = 0;
    let worst = -1;
    for (const [i, step] of script.steps.entries()) {
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
      textTokens: row,
      maxAbsDiff: max,
      worstStep: worst,
      tolerance,
      tokenizationChecked: script.tokenization?.length ?? 0,
      tokenizationMismatches: mismatches,
      pass: max <= tolerance && mismatches.length === 0 && row === script.textTokens,
      perStep,
    };
  } finally {
    if (!opts.model) await model.release();
  }
}

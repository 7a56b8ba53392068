import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { Model, type DecoderBackend, type EngineFrame } from '../../src/engine.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEV_CASA = path.join(ROOT, 'test', 'fixtures', 'bundles', 'dev-casa');
export const DEV_INSERTION = path.join(ROOT, 'test', 'fixtures', 'bundles', 'dev-insertion');
/** A tiny CASA bundle in format version 1 (batch-1 decoder), one level down so that model listings of test/fixtures/bundles do not show it. */
export const DEV_CASA_V1 = path.join(ROOT, 'test', 'fixtures', 'bundles', 'legacy', 'dev-casa-v1');

/** The dev bundles' models (the ONNX engine's Model), loaded before the calling file's tests and released after them. */
export function devModels(): { readonly casa: Model; readonly insertion: Model } {
  const models = {} as { casa: Model; insertion: Model };
  beforeAll(async () => {
    models.casa = await Model.load(DEV_CASA);
    models.insertion = await Model.load(DEV_INSERTION);
  });
  afterAll(async () => {
    await models.casa.release();
    await models.insertion.release();
  });
  return models;
}

/** Bundles the parity tests run on: the dev bundles always, the trained ones when present. */
export function parityBundles(): string[] {
  const trained = ['casa-tiny', 'casa-tiny-insertion']
    .map((n) => path.join(ROOT, 'models', n))
    .filter((d) => existsSync(path.join(d, 'casa.json')));
  return [DEV_CASA, DEV_INSERTION, DEV_CASA_V1, ...trained];
}

/** A copy of a bundle in a fresh temp dir (removed by the returned cleanup). */
export function copyBundle(src: string): { dir: string; cleanup: () => void } {
  const root = mkdtempSync(path.join(tmpdir(), 'casa-bundle-'));
  const dir = path.join(root, path.basename(src));
  cpSync(src, dir, { recursive: true });
  return { dir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Deterministic noise (LCG). */
export function noise(bytes: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export function noiseFrame(index: number, width = 64, height = 64, fps = 2): EngineFrame {
  return { index, ptsSeconds: index / fps, receivedAt: Date.now(), width, height, rgb: noise(width * height * 3, index + 1) };
}

/** What a greedy run recorded: every step's logits (copies) and each frame's sampled ids. */
export interface GreedyRecord {
  logits: Float32Array[];
  frames: number[][];
}

/**
 * Drives a decoder backend through the caption protocol greedily (argmax, as
 * `temperature: 0` sessions do): the prompt, then per frame the markers, up to `maxNew`
 * tokens, EOS, and endFrame. The frames' pixels are NCHW floats at the model's size.
 */
export async function greedyRun(model: Model, backend: DecoderBackend, pixels: readonly Float32Array[], maxNew = 8): Promise<GreedyRecord> {
  const V = model.manifest.decoder.vocabSize;
  const { eos, preImage, postImage } = model.manifest.tokens;
  const rec: GreedyRecord = { logits: [], frames: [] };
  const keep = (l: Float32Array): Float32Array => {
    rec.logits.push(l.slice());
    return l;
  };
  const argmax = (l: Float32Array, row: number): number => {
    let best = 0;
    for (let v = 1; v < V; v++) if ((l[row * V + v] as number) > (l[row * V + best] as number)) best = v;
    return best;
  };
  keep(await backend.feedText(model.promptIds));
  for (const px of pixels) {
    let logits = keep(await backend.startFrame(px, [preImage, postImage]));
    let row = 1;
    const ids: number[] = [];
    for (let tok = argmax(logits, row); tok !== eos && ids.length < maxNew; tok = argmax(logits, row)) {
      ids.push(tok);
      logits = keep(await backend.feedText([tok]));
      row = 0;
    }
    keep(await backend.feedText([eos]));
    backend.endFrame();
    rec.frames.push(ids);
  }
  return rec;
}

/** max |a − b| over two runs' logits, step by step (Infinity when they took different steps). */
export function maxLogitDiff(a: GreedyRecord, b: GreedyRecord): number {
  if (a.logits.length !== b.logits.length) return Infinity;
  let max = 0;
  a.logits.forEach((x, i) => {
    const y = b.logits[i] as Float32Array;
    if (x.length !== y.length) max = Infinity;
    for (let k = 0; k < x.length; k++) max = Math.max(max, Math.abs((x[k] as number) - (y[k] as number)));
  });
  return max;
}

/** NCHW pixels of noise frames (the model's preprocessing). */
export async function noisePixels(model: Model, count: number, seed = 0): Promise<Float32Array[]> {
  const pre = model.preprocessor();
  return Promise.all(Array.from({ length: count }, (_, i) => pre.pixels(noiseFrame(seed + i))));
}

import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { Model, type EngineFrame } from '../../src/engine.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEV_CASA = path.join(ROOT, 'test', 'fixtures', 'bundles', 'dev-casa');
export const DEV_INSERTION = path.join(ROOT, 'test', 'fixtures', 'bundles', 'dev-insertion');

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
  return [DEV_CASA, DEV_INSERTION, ...trained];
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

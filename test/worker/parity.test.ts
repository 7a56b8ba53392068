/**
 * Issue 22: `casa-live caption --model torch:models/casa-tiny <clip> --temperature 0` — the
 * embedded bundle rebuilt in PyTorch and run by the model worker — gives exactly the ONNX
 * engine's captions on every example clip (the demo clip's 120 frames pass the context cap,
 * so eviction and re-rotation are compared too).
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { clipCaptions, ensureBuilt } from '../cli/helpers.js';
import { ROOT } from './helpers.js';

const CLIPS = ['test-1', 'test-2', 'test-3', 'demo'];

beforeAll(ensureBuilt, 180_000);

async function captionsOf(clip: string, model: string[]): Promise<string[]> {
  const r = await clipCaptions(path.join(ROOT, 'examples', `${clip}.mp4`), [...model, '--temperature', '0'], 240_000);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.captions;
}

describe('the worker engine (torch:) captions every example clip exactly as the ONNX engine does', () => {
  for (const clip of CLIPS) {
    it(clip, async () => {
      const [worker, onnx] = await Promise.all([captionsOf(clip, ['--model', 'torch:models/casa-tiny']), captionsOf(clip, [])]);
      expect(onnx.length).toBeGreaterThanOrEqual(40);
      expect(worker).toEqual(onnx);
    }, 300_000);
  }
});

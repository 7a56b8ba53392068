/**
 * Issue 5: end to end on real encoded clips of the world with known truth (examples/,
 * H.264 written by `python3 -m tools.casa_model clips`): the captions the CLI prints match
 * the truth at the embedded model's measured accuracy — frame exact match at least
 * eval.json's figure minus 5 points — on the three held-out test clips and the demo clip.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { scoreCaptions } from '../../src/harness/long-stream.js';
import { REPO_ROOT, clipCaptions, ensureBuilt } from './helpers.js';

const MODEL = path.join(REPO_ROOT, 'models', 'casa-tiny');
const EXAMPLES = path.join(REPO_ROOT, 'examples');
const evalFigures = JSON.parse(readFileSync(path.join(MODEL, 'eval.json'), 'utf8')) as { frameExactMatch: number; tokenF1: number };

beforeAll(ensureBuilt, 180_000);

async function captionsOf(clip: string): Promise<string[]> {
  const r = await clipCaptions(clip, ['--temperature', '0']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.captions;
}

describe('captions of held-out clips match their truth (embedded model)', () => {
  it('test clips and the demo: frame exact match ≥ eval.json − 5 points', async () => {
    const pairs: [string, string][] = [];
    for (const name of ['test-1', 'test-2', 'test-3', 'demo']) {
      const truth = (JSON.parse(readFileSync(path.join(EXAMPLES, `${name}.json`), 'utf8')) as { captions: string[] }).captions;
      const got = await captionsOf(path.join(EXAMPLES, `${name}.mp4`));
      expect(got).toHaveLength(truth.length);
      got.forEach((g, i) => pairs.push([g, truth[i]!]));
    }
    const score = scoreCaptions(pairs);
    console.log(
      `CLI on examples/: ${score.frames} frames, exact ${score.frameExactMatch.toFixed(3)}, token F1 ${score.tokenF1.toFixed(3)} ` +
        `(eval.json: ${evalFigures.frameExactMatch}, ${evalFigures.tokenF1})`,
    );
    expect(score.frameExactMatch).toBeGreaterThanOrEqual(evalFigures.frameExactMatch - 0.05);
  }, 300_000);
});

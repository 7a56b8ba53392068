import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runParity } from '../../src/harness/parity.js';
import { DEV_CASA, DEV_INSERTION, parityBundles } from './helpers.js';

describe('parity with the PyTorch full-sequence reference', () => {
  const bundles = parityBundles();

  it('covers at least both dev bundles', () => {
    expect(bundles).toContain(DEV_CASA);
    expect(bundles).toContain(DEV_INSERTION);
  });

  for (const dir of bundles) {
    it(`${path.basename(dir)}: max |Δlogit| ≤ 1e-4 at every step, tokenizer reproduces the fixtures`, async () => {
      const r = await runParity(dir);
      expect(r.textTokens).toBeGreaterThan(0);
      expect(r.perStep.length).toBe(r.steps);
      expect(r.perStep.filter((s) => s.kind === 'frame').length).toBeGreaterThan(0);
      for (const s of r.perStep) expect(s.maxAbsDiff, `step ${s.step} (${s.kind})`).toBeLessThanOrEqual(1e-4);
      expect(r.maxAbsDiff).toBeLessThanOrEqual(r.tolerance);
      expect(r.tokenizationChecked).toBeGreaterThan(0);
      expect(r.tokenizationMismatches).toEqual([]);
      expect(r.pass).toBe(true);
    });
  }
});

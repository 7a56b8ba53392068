/**
 * Another revision built from git history (src/bench/other-build.ts) when it cannot be: B4
 * then falls back to its fixed baseline and says why. The build itself (a worktree of HEAD,
 * its bench worker running B4's trials, the worktree removed after) is exercised by the bench
 * smoke test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeContext } from '../../src/bench/context.js';
import { buildOtherRevision } from '../../src/bench/other-build.js';
import { BASELINE_P99_CAPTION_MS, runB4 } from '../../src/bench/suites/b4.js';
import { b3Params } from '../../src/bench/suites/b3.js';
import { ensureBuilt } from '../server/helpers.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const DEV_CASA = path.join(ROOT, 'test', 'fixtures', 'bundles', 'dev-casa');
const DEV_INSERTION = path.join(ROOT, 'test', 'fixtures', 'bundles', 'dev-insertion');

describe('another revision for a same-run comparison', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'casa-other-build-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('refuses a revision the history lacks, or a directory outside git, with the reason', async () => {
    await expect(buildOtherRevision(ROOT, 'no-such-revision', () => undefined)).rejects.toThrow(/revision no-such-revision is not in the git history/);
    await expect(buildOtherRevision(out, 'HEAD', () => undefined)).rejects.toThrow(/is not in a git repository/);
  });

  it('B4 falls back to the fixed baseline and says why', async () => {
    await ensureBuilt();
    const ctx = makeContext({ quick: true, suites: ['b4'], outDir: out, casa: DEV_CASA, insertion: DEV_INSERTION, log: () => undefined, root: ROOT, command: 'vitest other-build' }, {});
    const r = await runB4(ctx, { singleRepeats: 1, measureS: 1.2, warmupS: 0.6, graceS: 0.3, beforeBatching: 'no-such-revision' }, b3Params(true));
    const results = r.results as { oneStreamByEngine: Record<string, unknown>; beforeBatching: { notRun?: string } };
    expect(Object.keys(results.oneStreamByEngine)).toEqual(['default']);
    expect(results.beforeBatching.notRun).toMatch(/revision no-such-revision is not in the git history/);
    const target = r.targets.find((t) => t.target === '≤ 1.2×');
    expect(target?.name).toContain(`${BASELINE_P99_CAPTION_MS} ms`);
    expect(target?.note).toMatch(/^The engine before batching was not run \(revision no-such-revision is not in the git history/);
  }, 120_000);
});

/**
 * Smoke test of the benchmark machinery (src/bench): every suite on tiny inputs with the dev
 * bundles, checking that it writes well-formed results (JSON envelope, targets, raw samples,
 * SVG plots, SUMMARY.md). No timing is asserted here: figures come from `npm run bench`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSuites, replot, runBench, type BenchRunResult } from '../../src/bench/index.js';
import { SUITE_FILES, SUITE_IDS, type SuiteResult } from '../../src/bench/common.js';
import { runB1 } from '../../src/bench/suites/b1.js';
import { runB2 } from '../../src/bench/suites/b2.js';
import { runB3, type B3Params } from '../../src/bench/suites/b3.js';
import { PRE_BATCHING, runB4 } from '../../src/bench/suites/b4.js';
import { runB5 } from '../../src/bench/suites/b5.js';
import { runB6 } from '../../src/bench/suites/b6.js';
import { B7_ENGINES, runB7, type B7Params } from '../../src/bench/suites/b7.js';
import { runB8 } from '../../src/bench/suites/b8.js';
import { runWorkerSuite } from '../../src/bench/suites/worker.js';
import { lineChart, niceTicks } from '../../src/bench/svg.js';
import { linearFit, percentile, rollingMedian } from '../../src/bench/stats.js';
import { ensureBuilt } from '../server/helpers.js';
import { runCli } from '../cli/helpers.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const DEV_CASA = path.join(ROOT, 'test', 'fixtures', 'bundles', 'dev-casa');
const DEV_INSERTION = path.join(ROOT, 'test', 'fixtures', 'bundles', 'dev-insertion');
const havePython = existsSync('/usr/bin/python3') && existsSync(path.join(ROOT, 'tools', 'casa_model', 'stream.py'));

describe('bench helpers', () => {
  it('computes percentiles, fits and ticks', () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([5], 99)).toBe(5);
    expect(Number.isNaN(percentile([], 50))).toBe(true);
    const fit = linearFit([1, 2, 3], [3, 5, 7]);
    expect(fit.slope).toBeCloseTo(2);
    expect(fit.intercept).toBeCloseTo(1);
    expect(rollingMedian([1, 100, 1, 1, 1], 3)).toEqual([50.5, 1, 1, 1, 1]);
    expect(niceTicks(0, 10)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(() => parseSuites('b42')).toThrow(/unknown suite/);
    expect(parseSuites('b3,b1')).toEqual(['b1', 'b3']);
    expect(parseSuites(undefined)).toEqual([...SUITE_IDS]);
  });

  it('draws a standalone SVG', () => {
    const svg = lineChart({ title: 'T <&>', xLabel: 'x', yLabel: 'y', logY: true, series: [{ name: 'a', color: '#000', points: [[1, 1], [2, 10], [3, 0]] }], refLines: [{ y: 5, label: 'r' }] });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('T &lt;&amp;&gt;');
    expect(svg.trim().endsWith('</svg>')).toBe(true);
  });
});

describe('casa-live bench (smoke, tiny inputs)', () => {
  let out: string;
  let run: BenchRunResult;
  const b3Tiny: B3Params = {
    warmupS: 0.6, searchMeasureS: 1.2, confirmMeasureS: 1.2, confirmRepeats: 1, fromStreams: 1, maxStreams: 1, graceS: 0.3,
    clip: { seconds: 12, width: 64, height: 64, fps: 4 }, liveSeconds: 20, decodeOptions: { threads: 1 },
    decode: { streams: 1, warmupS: 0.3, measureS: 0.6, clipSeconds: 6, inputs: [{ name: '64x64 4 fps', width: 64, height: 64, fps: 4, noise: 0 }], variants: { 'threads 1': { threads: 1 } }, comparePts: 4 },
    ingest: { fromStreams: 1, maxStreams: 1, warmupS: 0.3, measureS: 0.6 },
    mainThreadEngine: null,
  };
  const b7Tiny: B7Params = {
    sessions: [1, 2], repeats: 1, warmupS: 0.3, warmupLimitS: 10, measureS: 0.6, minFramesPerSession: 1, maxMeasureS: 5,
    engines: B7_ENGINES, matmulSizes: '16x32x48', matmulThreads: [1], matmulSeconds: 0.1,
  };

  // Every suite at tiny sizes, one after the other: about 2 minutes alone, several when the
  // whole test run shares the machine (a limit, not a timing assertion).
  beforeAll(async () => {
    await ensureBuilt();
    out = mkdtempSync(path.join(tmpdir(), 'casa-bench-test-'));
    run = await runBench(
      { quick: true, suites: [...SUITE_IDS], outDir: out, casa: DEV_CASA, insertion: DEV_INSERTION, log: () => undefined, root: ROOT, command: 'vitest bench smoke' },
      {
        b1: (ctx) => runB1(ctx, { frames: 60, casaRepeats: 1, insertionRepeats: 1, extendBudgetS: 0, extendMaxFrames: 60, rssEvery: 10, compressedTokens: havePython ? [2] : [] }),
        b2: (ctx) => runB2(ctx, { frames: 3, repeats: 1, warmup: 1, threads: 1 }),
        b3: (ctx) => runB3(ctx, b3Tiny),
        // The engine before batching, as a full run builds 4b3b6e2: here this checkout's HEAD
        // (present in any clone, shallow or not), built in a temporary worktree and run by its
        // own bench worker — the same machinery on a revision that always exists.
        b4: (ctx) => runB4(ctx, { singleRepeats: 1, measureS: 1.2, warmupS: 0.6, graceS: 0.3, beforeBatching: 'HEAD' }, b3Tiny),
        b5: (ctx) => runB5(ctx, { clients: 20, windows: 1, windowS: 1.2, variants: [{ name: 'fsync off', fsync: false }], tokensPerFrame: 3, frameMs: 200, settleS: 0.3 }),
        b6: (ctx) => runB6(ctx, { streamSeconds: 40, sampleEvery: 10, restartCycles: 1, warmupFraction: 0.1, warmupMinWallS: 0, warmupSettleS: 0 }),
        b7: (ctx) => runB7(ctx, b7Tiny),
        // a real redis-server (.ci/deps-server.sh installs it): without one B8 is skipped and the JSON check below fails
        b8: (ctx) => runB8(ctx, { nodes: 2, streams: 2, kills: 1, leaseMs: 1000, quietMs: 500, viewers: 10, viewerNodes: 2, windows: 1, windowS: 1.2, settleS: 0.3, tokensPerFrame: 3, frameMs: 200 }),
        worker: (ctx) => runWorkerSuite(ctx, { streams: [1, 2], frames: 2, warmup: 1, repeats: 1 }),
      },
    );
  }, 600_000);

  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('runs every suite without failures', () => {
    expect(run.failures).toEqual([]);
    expect(run.results.map((r) => r.suite)).toEqual([...SUITE_IDS]);
  });

  it('writes one well-formed JSON file per suite', () => {
    for (const id of SUITE_IDS) {
      const file = path.join(out, `${SUITE_FILES[id]}.json`);
      const r = JSON.parse(readFileSync(file, 'utf8')) as SuiteResult;
      expect(r.suite).toBe(id);
      expect(r.command).toBe('vitest bench smoke');
      expect(r.machine.cpus).toBeGreaterThan(0);
      expect(r.versions.node).toBe(process.versions.node);
      expect(typeof r.versions.onnxruntimeNode).toBe('string');
      expect(Date.parse(r.startedAt)).toBeLessThanOrEqual(Date.parse(r.finishedAt));
      if ((id === 'b2' || id === 'worker') && !havePython) {
        expect(r.skipped).toBeTruthy();
        continue;
      }
      expect(r.skipped).toBeUndefined();
      expect(Object.keys(r.results).length).toBeGreaterThan(0);
      expect(Object.keys(r.samples).length).toBeGreaterThan(0);
      expect(r.targets.length).toBeGreaterThan(0);
      for (const t of r.targets) expect(t.met === null || typeof t.met === 'boolean').toBe(true);
      for (const p of r.plots) {
        const svg = readFileSync(path.join(out, p), 'utf8');
        expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
        expect(svg).toMatch(/<\/svg>\s*$/);
      }
    }
  });

  it('records real measurements', () => {
    const b1 = run.results.find((r) => r.suite === 'b1') as SuiteResult;
    const casa = (b1.samples.casa as Array<{ frameMs: number[]; kvBytes: number[] }>)[0];
    const ins = (b1.samples.insertion as Array<{ frameMs: number[]; kvTokens: number[] }>)[0];
    expect(casa?.frameMs).toHaveLength(60);
    expect(casa?.frameMs.every((x) => x > 0)).toBe(true);
    // Insertion writes 16 image tokens + 8 text tokens per frame into its cache; CASA stays capped.
    expect((ins?.kvTokens[59] ?? 0) - (ins?.kvTokens[58] ?? 0)).toBe(24);
    expect(Math.max(...(b1.samples.casa as Array<{ kvTokens: number[] }>)[0]!.kvTokens)).toBeLessThanOrEqual(256);
    if (havePython) {
      // The twin compressed to 2 image tokens per frame (tools/casa_model compressed): 2 + 8 per frame.
      const q2 = (b1.samples.compressed as Array<{ imageTokensPerFrame: number; kvTokens: number[] }>)[0];
      expect(q2?.imageTokensPerFrame).toBe(2);
      expect((q2?.kvTokens[59] ?? 0) - (q2?.kvTokens[58] ?? 0)).toBe(10);
    }
    const b3 = run.results.find((r) => r.suite === 'b3') as SuiteResult;
    const trials = b3.results.trials as Array<{ p50CaptionMs: number; p99DeliveryMs: number; p99LiveToCaptionMs: number }>;
    expect(trials.length).toBeGreaterThan(0);
    // Each frame's delivery delay is ≥ 0 (its stream's fastest frame is 0), so live→caption ≥ frame→caption.
    for (const t of trials) {
      expect(t.p99DeliveryMs).toBeGreaterThanOrEqual(0);
      expect(t.p99LiveToCaptionMs).toBeGreaterThanOrEqual(t.p50CaptionMs);
    }
    const b4 = run.results.find((r) => r.suite === 'b4') as SuiteResult;
    expect((b4.results.beforeBatching as { notRun?: string }).notRun).toBeUndefined();
    const engines = b4.results.oneStreamByEngine as Record<string, { captionMs: { n: number; p99: number } }>;
    expect(Object.keys(engines)).toEqual(['default', PRE_BATCHING]);
    // The worktree it was built in is gone.
    const worktrees = execFileSync('git', ['worktree', 'list', '--porcelain'], { cwd: ROOT, encoding: 'utf8' });
    expect(worktrees).not.toMatch(/casa-live-rev-\w+\/HEAD/);
    expect(engines[PRE_BATCHING]?.captionMs.n).toBeGreaterThan(0);
    const vsBefore = b4.targets.find((t) => t.name.includes('÷ the engine before batching (HEAD) in the same runs'));
    expect(vsBefore?.value).toBeCloseTo((engines.default?.captionMs.p99 ?? NaN) / (engines[PRE_BATCHING]?.captionMs.p99 ?? NaN), 2);
    const b5 = run.results.find((r) => r.suite === 'b5') as SuiteResult;
    const v = (b5.results.variants as Array<{ captionMs: { n: number }; closedClients: number[] }>)[0];
    expect(v?.captionMs.n).toBeGreaterThan(0);
    const b6 = run.results.find((r) => r.suite === 'b6') as SuiteResult;
    expect((b6.results as { frames: number }).frames).toBe(80);
    expect((b6.results as { children: { after: string[] } }).children.after).toEqual([]);
    const b8 = run.results.find((r) => r.suite === 'b8') as SuiteResult;
    const failover = b8.results.failover as { streamsMoved: number; timedOut: number; seqGaps: number };
    expect(failover.streamsMoved).toBeGreaterThan(0);
    expect(failover.timedOut).toBe(0);
    expect(failover.seqGaps).toBe(0);
    expect((b8.results.fanout as { captionMs: { n: number } }).captionMs.n).toBeGreaterThan(0);
  });

  it('writes SUMMARY.md with every suite', () => {
    const md = readFileSync(run.summaryPath, 'utf8');
    for (const id of SUITE_IDS) expect(md).toContain(`${SUITE_FILES[id]}.json`);
  });

  it('redraws the plots from the JSON files (--replot)', () => {
    const before = readFileSync(path.join(out, 'b1-frame-time.svg'), 'utf8');
    rmSync(path.join(out, 'b1-frame-time.svg'));
    const written = replot(out);
    expect(written).toContain('b1-frame-time.svg');
    expect(readFileSync(path.join(out, 'b1-frame-time.svg'), 'utf8')).toBe(before);
  });

  it('has a CLI command with help', async () => {
    const r = await runCli(['bench', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--quick/);
    expect(r.stdout).toMatch(/Examples:\n {2}casa-live bench/);
    expect(r.stdout).toMatch(/Exit codes:/);
    const bad = await runCli(['bench', '--suite', 'b9']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown suite "b9"/);
  });
});

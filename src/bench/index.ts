/**
 * `casa-live bench` / `npm run bench`: the benchmark suites (docs/benchmarks.md).
 * Writes one JSON file per suite (machine, versions, command, config, results, targets, raw
 * samples), SVG plots and SUMMARY.md into the results directory.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../install.js';
import {
  machineInfo,
  SUITE_FILES,
  SUITE_IDS,
  SUITE_TITLES,
  versions,
  type BenchOptions,
  type SuiteId,
  type SuiteOutput,
  type SuiteResult,
} from './common.js';
import { makeContext, type SuiteContext } from './context.js';
import { runB1 } from './suites/b1.js';
import { runB2 } from './suites/b2.js';
import { runB3 } from './suites/b3.js';
import { runB4 } from './suites/b4.js';
import { runB5 } from './suites/b5.js';
import { runB6 } from './suites/b6.js';
import { runB7 } from './suites/b7.js';
import { runB8 } from './suites/b8.js';
import { runWorkerSuite } from './suites/worker.js';
import { plotsFor } from './plots.js';
import { readResults, writeSummary } from './summary.js';

export { SUITE_IDS, type SuiteId, type BenchOptions, type SuiteResult } from './common.js';
export { writeSummary } from './summary.js';

const SUITES: Record<SuiteId, (ctx: SuiteContext) => Promise<SuiteOutput>> = {
  b1: runB1,
  b2: runB2,
  b3: runB3,
  b4: runB4,
  b5: runB5,
  b6: runB6,
  b7: runB7,
  b8: runB8,
  worker: runWorkerSuite,
};

/** The bundles used by default: the trained ones when present, else the dev bundles (random weights). */
export function defaultBundles(root: string = packageRoot()): { casa: string; insertion: string; trained: boolean } {
  const casa = path.join(root, 'models', 'casa-tiny');
  const insertion = path.join(root, 'models', 'casa-tiny-insertion');
  if (existsSync(path.join(casa, 'casa.json')) && existsSync(path.join(insertion, 'casa.json'))) return { casa, insertion, trained: true };
  return {
    casa: path.join(root, 'test', 'fixtures', 'bundles', 'dev-casa'),
    insertion: path.join(root, 'test', 'fixtures', 'bundles', 'dev-insertion'),
    trained: false,
  };
}

export interface BenchRunResult {
  results: SuiteResult[];
  failures: Array<{ suite: SuiteId; error: string }>;
  summaryPath: string;
}

/** Runs the selected suites in order; a failing suite is reported and the others still run. */
export async function runBench(opts: BenchOptions, overrides: Partial<Record<SuiteId, (ctx: SuiteContext) => Promise<SuiteOutput>>> = {}): Promise<BenchRunResult> {
  mkdirSync(opts.outDir, { recursive: true });
  const earlier: Partial<Record<SuiteId, SuiteResult>> = {};
  const results: SuiteResult[] = [];
  const failures: BenchRunResult['failures'] = [];
  const ctx = makeContext(opts, earlier);
  const order = SUITE_IDS.filter((id) => opts.suites.includes(id));
  for (const id of order) {
    const started = new Date();
    const t0 = performance.now();
    opts.log(`=== ${SUITE_TITLES[id]}${opts.quick ? ' (quick)' : ''}`);
    const machine = machineInfo();
    let out: SuiteOutput;
    try {
      out = await (overrides[id] ?? SUITES[id])(ctx);
    } catch (err) {
      const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
      opts.log(`${id} failed: ${message}`);
      failures.push({ suite: id, error: message.split('\n')[0] ?? message });
      continue;
    }
    const result: SuiteResult = {
      suite: id,
      title: SUITE_TITLES[id],
      quick: opts.quick,
      command: opts.command,
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      durationSeconds: Math.round((performance.now() - t0) / 100) / 10,
      machine,
      versions: versions(),
      config: out.config,
      results: out.results,
      targets: out.targets,
      notes: out.notes,
      plots: [],
      samples: out.samples,
      ...(out.skipped ? { skipped: out.skipped } : {}),
    };
    const plots = plotsFor(result);
    result.plots = Object.keys(plots);
    for (const [name, svg] of Object.entries(plots)) writeFileSync(path.join(opts.outDir, name), svg);
    writeFileSync(path.join(opts.outDir, `${SUITE_FILES[id]}.json`), JSON.stringify(result, null, 1) + '\n');
    earlier[id] = result;
    results.push(result);
    if (out.skipped) opts.log(`${id} skipped: ${out.skipped}`);
    for (const t of out.targets) {
      if (t.met === null) continue;
      opts.log(`${id}: ${t.met ? 'met   ' : 'MISSED'} ${t.name}: ${t.value ?? '—'}${t.unit && typeof t.value === 'number' ? ` ${t.unit}` : ''} (target ${t.target})`);
    }
    opts.log(`${id} done in ${result.durationSeconds} s → ${path.join(opts.outDir, `${SUITE_FILES[id]}.json`)}`);
  }
  writeSummary(opts.outDir);
  return { results, failures, summaryPath: path.join(opts.outDir, 'SUMMARY.md') };
}

/**
 * Redraws the plots of every suite JSON in `outDir` (and SUMMARY.md) from the data it holds:
 * no measurement is run.
 */
export function replot(outDir: string): string[] {
  const written: string[] = [];
  for (const r of readResults(outDir)) {
    const plots = plotsFor(r);
    for (const [name, svg] of Object.entries(plots)) {
      writeFileSync(path.join(outDir, name), svg);
      written.push(name);
    }
    if (JSON.stringify(r.plots) !== JSON.stringify(Object.keys(plots))) {
      r.plots = Object.keys(plots);
      writeFileSync(path.join(outDir, `${SUITE_FILES[r.suite]}.json`), JSON.stringify(r, null, 1) + '\n');
    }
  }
  writeSummary(outDir);
  return written;
}

/** Parses "b1,b3" / ["b1", "b3"] / "all". */
export function parseSuites(spec: string | string[] | undefined): SuiteId[] {
  if (spec === undefined) return [...SUITE_IDS];
  const parts = (Array.isArray(spec) ? spec : [spec]).flatMap((s) => s.split(',')).map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (parts.includes('all')) return [...SUITE_IDS];
  const bad = parts.filter((p) => !(SUITE_IDS as readonly string[]).includes(p));
  if (bad.length) throw new Error(`unknown suite ${bad.map((b) => `"${b}"`).join(', ')} (suites: ${SUITE_IDS.join(', ')}, all)`);
  return SUITE_IDS.filter((id) => parts.includes(id));
}

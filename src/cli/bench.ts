/** `casa-live bench`: runs the benchmark suites (src/bench, docs/benchmarks.md). */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ModelError, UsageError } from '../errors.js';
import { defaultBundles, parseSuites, replot, runBench } from '../bench/index.js';
import { headline, readResults } from '../bench/summary.js';
import { packageRoot } from '../install.js';
import type { CliIo } from './common.js';

export interface BenchArgs {
  quick?: boolean;
  suite?: string | string[];
  out?: string;
  casa?: string;
  insertion?: string;
  replot?: boolean;
}

function bundleDir(dir: string, flag: string): string {
  const abs = path.resolve(dir);
  if (!existsSync(path.join(abs, 'casa.json'))) throw new ModelError(`${flag} ${dir}: no model bundle there (casa.json is missing).`);
  return abs;
}

export async function runBenchCli(args: BenchArgs, argv: string[], io: Pick<CliIo, 'stdout' | 'stderr'>): Promise<number> {
  let suites;
  try {
    suites = parseSuites(args.suite);
  } catch (err) {
    throw new UsageError(`--suite: ${(err as Error).message}.`);
  }
  const root = packageRoot();
  const defaults = defaultBundles(root);
  const casa = args.casa ? bundleDir(args.casa, '--casa') : defaults.casa;
  const insertion = args.insertion ? bundleDir(args.insertion, '--insertion') : defaults.insertion;
  const quick = args.quick === true;
  const outDir = path.resolve(args.out ?? path.join(root, 'bench', 'results', ...(quick ? ['quick'] : [])));
  if (args.replot) {
    const written = replot(outDir);
    io.stdout.write(`casa-live bench --replot: ${written.length} plots and SUMMARY.md redrawn in ${outDir} from its JSON files\n`);
    return 0;
  }
  const npm = process.env.npm_lifecycle_event;
  const command = `${npm && npm.startsWith('bench') ? `npm run ${npm} → ` : ''}casa-live bench${argv.length ? ` ${argv.join(' ')}` : ''}`;
  const log = (line: string): void => {
    io.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
  };
  if (!args.casa && !defaults.trained) log('models/casa-tiny is not built: using the dev bundles (random weights; timing is representative, captions are not)');
  log(`suites ${suites.join(', ')}${quick ? ' (quick)' : ''}; CASA ${path.relative(process.cwd(), casa) || casa}, insertion ${path.relative(process.cwd(), insertion) || insertion}; results → ${outDir}`);
  const run = await runBench({ quick, suites, outDir, casa, insertion, log, root, command });
  const all = readResults(outDir).filter((r) => suites.includes(r.suite));
  io.stdout.write(`\ncasa-live bench${quick ? ' --quick' : ''}: results in ${outDir}\n`);
  for (const r of all) io.stdout.write(`  ${r.suite.toUpperCase()}  ${r.skipped ? `not run: ${r.skipped}` : headline(r)}\n`);
  for (const f of run.failures) io.stdout.write(`  ${f.suite.toUpperCase()}  FAILED: ${f.error}\n`);
  io.stdout.write(`  summary: ${run.summaryPath}\n`);
  return run.failures.length ? 1 : 0;
}

#!/usr/bin/env node
// npm run parity [-- <bundle dir> ... | --json]
// Replays each bundle's fixtures (fixtures/session.json) through the runtime's incremental
// path and prints max |Δlogit| against the PyTorch full-sequence reference (tolerance 1e-4),
// and whether the tokenizer reproduces the fixture's tokenization; for bundles with batch
// fixtures (format version 2), also replays their streams side by side through the batched
// engine (one graph run for all of them) against their references. Exit status 1 on failure.
// Default bundles: the dev bundles under test/fixtures/bundles and models/* when present.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasBatchFixtures, runBatchParity, runParity } from '../dist/harness/parity.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const json = args.includes('--json');
let bundles = args.filter((a) => !a.startsWith('--'));
if (bundles.length === 0) {
  bundles = [
    'test/fixtures/bundles/dev-casa',
    'test/fixtures/bundles/dev-insertion',
    'models/casa-tiny',
    'models/casa-tiny-insertion',
  ].filter((d, i) => i < 2 || existsSync(path.join(root, d, 'casa.json')));
  bundles = bundles.map((d) => path.join(root, d));
}

let failed = false;
const results = [];
for (const dir of bundles) {
  try {
    const r = await runParity(dir);
    results.push(r);
    if (!r.pass) failed = true;
    if (!json) {
      const tok = r.tokenizationMismatches.length === 0 ? `tokenizer ok (${r.tokenizationChecked} texts)` : `tokenizer MISMATCH on ${r.tokenizationMismatches.length} texts`;
      console.log(
        `${r.pass ? 'PASS' : 'FAIL'}  ${path.relative(root, dir) || dir}  [${r.fusion}]  ${r.steps} steps, ${r.textTokens} text tokens:` +
          `  max |Δlogit| = ${r.maxAbsDiff.toExponential(3)} (tolerance ${r.tolerance}, worst at step ${r.worstStep})  ${tok}`,
      );
    }
    if (hasBatchFixtures(dir)) {
      const b = await runBatchParity(dir);
      r.batch = b;
      if (!b.pass) failed = true;
      if (!json) {
        console.log(
          `${b.pass ? 'PASS' : 'FAIL'}  ${path.relative(root, dir) || dir}  batch: ${b.streams} streams side by side (up to ${b.maxRows} in one run):` +
            `  max |Δlogit| = ${b.maxAbsDiff.toExponential(3)} (tolerance ${b.tolerance})`,
        );
      }
    }
  } catch (err) {
    failed = true;
    results.push({ bundle: dir, error: err instanceof Error ? err.message : String(err) });
    if (!json) console.log(`FAIL  ${dir}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
if (json) console.log(JSON.stringify(results.map(({ perStep, ...r }) => r), null, 2));
process.exit(failed ? 1 : 0);

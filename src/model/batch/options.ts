/**
 * The batched engine's load options (LoadOptions.batch): defaults, validation, and whether a
 * bundle can use it at all. The defaults come from measurements on the 2-core development
 * machine (docs/architecture.md §Batching).
 */
import os from 'node:os';
import { UsageError, ModelError } from '../../errors.js';
import type { BundleMeta, LoadOptions } from '../bundle.js';
import { isBatchable } from '../manifest.js';
import type { ResolvedBatch } from './pool.js';

/**
 * One worker per core (at most 4): with one worker, the worker is the bottleneck while the
 * main thread is mostly idle; on the 2-core development machine two workers gave 1.1–1.9×
 * the frames/s of one at 64 streams, at the same frames per CPU-second. 64 rows per run; a
 * 2 ms gather window (streams in step submit together, so it is rarely waited out; it bounds
 * what a late stream costs the others). Frames wait up to 80 ms for other streams' frames
 * (in a worker serving ≥ 16 streams): 100–160 real-time 2-fps streams with no frame wait ran
 * 1.4–3 rows per run at 5.8–6.4 ms of CPU per frame; with 40 ms, 6–11 rows and 2.4–3.8 ms;
 * with 80 ms, 10–21 rows and 2.1–3.3 ms, p99 engine latency 125–161 ms (bench/realtime-batching.mjs). Measurements: docs/architecture.md §Batching.
 */
export const BATCH_DEFAULTS: ResolvedBatch = { maxSize: 64, gatherMs: 2, frameGatherMs: 80, workers: Math.min(4, Math.max(1, os.availableParallelism())) };

export type BatchPlan = ({ enabled: true } & ResolvedBatch) | { enabled: false; reason: string };

function check(name: string, value: number, ok: boolean, rule: string): void {
  if (!ok) throw new UsageError(`load option batch.${name} = ${value} is invalid: ${rule}`);
}

/**
 * Whether (and how) a bundle runs batched. A version-1 CASA bundle runs unbatched, unless
 * the options ask for batching explicitly: then a ModelError says how to re-export it.
 * Insertion bundles always run unbatched (their decoder has no batch axis).
 */
export function planBatch(opts: LoadOptions, meta: BundleMeta): BatchPlan {
  if (opts.batch === false) return { enabled: false, reason: 'batch: false' };
  const m = meta.manifest;
  if (m.fusion === 'insertion') return { enabled: false, reason: 'the insertion twin runs one stream per graph run' };
  if (!isBatchable(m)) {
    const what = `${meta.files.manifest}: format version ${m.formatVersion} has no batch axis`;
    const fix = `re-export it with "python3 -m tools.casa_model reexport --bundle ${meta.dir}"`;
    if (opts.batch !== undefined) throw new ModelError(`${what}; ${fix}, or load it with batch: false`);
    return { enabled: false, reason: `${what} (${fix} to batch it)` };
  }
  const o = opts.batch ?? {};
  const b: ResolvedBatch = {
    maxSize: o.maxSize ?? BATCH_DEFAULTS.maxSize,
    gatherMs: o.gatherMs ?? BATCH_DEFAULTS.gatherMs,
    frameGatherMs: o.frameGatherMs ?? BATCH_DEFAULTS.frameGatherMs,
    workers: o.workers ?? BATCH_DEFAULTS.workers,
  };
  check('maxSize', b.maxSize, Number.isInteger(b.maxSize) && b.maxSize >= 1, 'must be an integer ≥ 1');
  check('gatherMs', b.gatherMs, Number.isFinite(b.gatherMs) && b.gatherMs >= 0, 'must be a number ≥ 0');
  check('frameGatherMs', b.frameGatherMs, Number.isFinite(b.frameGatherMs) && b.frameGatherMs >= 0, 'must be a number ≥ 0');
  check('workers', b.workers, Number.isInteger(b.workers) && b.workers >= 1 && b.workers <= 64, 'must be an integer from 1 to 64');
  return { enabled: true, ...b };
}

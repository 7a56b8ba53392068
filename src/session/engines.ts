/**
 * The two ways a loaded model runs its streams' graphs (docs/architecture.md §Engine):
 * - batched: inference worker threads run the steps of many streams together (format
 *   version 2 CASA bundles, the default);
 * - unbatched: each stream's graph runs one at a time on the calling thread (version-1 and
 *   insertion bundles, or `batch: false`).
 * Model (src/engine.ts) holds one and asks it for each stream's DecoderBackend.
 */
import { releaseGraphs, openGraphs, type BundleMeta, type LoadOptions } from '../model/bundle.js';
import type { BundleGraphs, RunTimer } from '../model/graphs.js';
import type { ContextPolicy } from '../model/kv-cache.js';
import { planBatch } from '../model/batch/options.js';
import { InferencePool, type BatchStats, type ResolvedBatch } from '../model/batch/pool.js';
import type { ChainRule } from '../model/batch/protocol.js';
import { inverseFrequencies } from '../model/rope.js';
import type { DecoderBackend } from './backend.js';
import { BatchedCasaBackend } from './batched-backend.js';
import { CasaBackend } from './casa-backend.js';
import { InsertionBackend } from './insertion-backend.js';

/** How a model runs: batched (with its settings) or not (and why). */
export type EngineInfo =
  | ({ batched: true } & ResolvedBatch)
  | { batched: false; reason: string };

export interface Engine {
  readonly info: EngineInfo;
  /** A stream's decoder state (caches and graph runs). */
  openBackend(policy: ContextPolicy, windowCapacity: number, timer?: RunTimer, chain?: ChainRule): DecoderBackend;
  /** The batched engine's counters (undefined when unbatched). */
  stats(): BatchStats | undefined;
  release(): Promise<void>;
}

class UnbatchedEngine implements Engine {
  private readonly invFreq: Float64Array;

  constructor(
    private readonly meta: BundleMeta,
    private readonly graphs: BundleGraphs,
    readonly info: EngineInfo,
  ) {
    const d = meta.manifest.decoder;
    this.invFreq = inverseFrequencies(d.headDim, d.ropeTheta);
  }

  openBackend(policy: ContextPolicy, windowCapacity: number, timer?: RunTimer): DecoderBackend {
    const g = this.graphs;
    return g.fusion === 'casa'
      ? new CasaBackend(this.meta.manifest, g, policy, this.invFreq, windowCapacity, timer)
      : new InsertionBackend(this.meta.manifest, g, policy, this.invFreq, timer);
  }

  stats(): undefined {
    return undefined;
  }

  release(): Promise<void> {
    return releaseGraphs(this.graphs);
  }
}

class BatchedEngine implements Engine {
  constructor(
    private readonly meta: BundleMeta,
    private readonly pool: InferencePool,
    readonly info: EngineInfo,
  ) {}

  openBackend(policy: ContextPolicy, windowCapacity: number, timer?: RunTimer, chain?: ChainRule): DecoderBackend {
    const channel = this.pool.open(policy.maxTokens, windowCapacity, chain);
    return new BatchedCasaBackend(this.meta.manifest, channel, policy, windowCapacity, timer);
  }

  stats(): BatchStats {
    return this.pool.stats();
  }

  release(): Promise<void> {
    return this.pool.release();
  }
}

/** Starts the engine the options and the bundle call for (ModelError / UsageError when they cannot). */
export async function startEngine(meta: BundleMeta, opts: LoadOptions): Promise<Engine> {
  const plan = planBatch(opts, meta);
  if (!plan.enabled) return new UnbatchedEngine(meta, await openGraphs(meta.manifest, meta.files, opts), { batched: false, reason: plan.reason });
  const { enabled: _on, ...batch } = plan;
  return new BatchedEngine(meta, await InferencePool.start(meta, opts, batch), { batched: true, ...batch });
}

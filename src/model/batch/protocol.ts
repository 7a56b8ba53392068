/**
 * Messages between the main thread and an inference worker of the batched engine
 * (docs/architecture.md §Batching). The main thread keeps each stream's protocol, sampling
 * and eviction bookkeeping; a worker keeps the streams' K/V and runs the graphs. Operations
 * made during one turn of the main event loop travel as one `ops` message; a worker answers
 * each graph run with one `results` message.
 *
 * Chaining (greedy streams): a worker feeds a stream's likely next token itself, as soon as
 * a step's logits are known, instead of waiting for the main thread to sample it; the main
 * thread takes that run's result when its sampler chose the same token and otherwise sends
 * its own step, which rolls the guessed entries back (docs/architecture.md §Batching, Chaining).
 */
import type { BundleFiles, LoadOptions } from '../bundle.js';
import type { Eviction } from '../kv-cache.js';
import type { Manifest } from '../manifest.js';
import type { ResolvedBatch } from './pool.js';

/** What a worker is started with (workerData). */
export interface WorkerInit {
  manifest: Manifest;
  files: BundleFiles;
  /** onnxruntime settings (execution provider, threads); `batch` is not used there. */
  load: Omit<LoadOptions, 'batch'>;
  /** The batch settings: run size and gather windows (`workers` is the pool's, not used there). */
  batch: ResolvedBatch;
  /** Slots of the model's default cap preallocated per pool segment. */
  poolSegment: number;
}

/**
 * How a worker guesses a greedy stream's next step (the sampler's greedy choice without its
 * stateful processors): the argmax of the last logits row after the stop-token bias
 * (`eosBias` added, `stopBias` multiplied; 0 and 1 when the sampler applies none). After a
 * frame's first step it chains what the session's frame loop would feed: up to `tokens`
 * single text tokens, then the closing step — the stop token when it is the guess, else
 * (budget spent, and one stop id only) the last text token with the stop token. Nothing is
 * chained after a step that ends with a stop token.
 */
export interface ChainRule {
  tokens: number;
  stopIds: number[];
  eosBias: number;
  stopBias: number;
}

/** A stream's next step: text tokens fed into its caches, after an optional frame start. */
export interface StepOp {
  op: 'step';
  sid: number;
  /** The request it answers; for a chained step, the request that started the chain. */
  req: number;
  /** A step the worker chained itself (its `req` is the chain's first request). */
  chained?: true;
  /** It closes the stream's frame (a chained closing step: the gather rule stops waiting for the stream). */
  closes?: true;
  ids: number[];
  /** Self-attention position of ids[0]: the stream's cache length once `evict` is applied. */
  position: number;
  /** Entries to evict first (decided by the stream's ContextBook on the main thread). */
  evict?: Eviction;
  /** A frame starts with this step: its NCHW pixels (vision → casa_kv → window swap first). */
  pixels?: Float32Array;
}

export type WorkerOp =
  /** A new stream: its cache cap (null: unbounded), the window tokens to preallocate, and (greedy streams) how to chain. */
  | { op: 'open'; sid: number; maxTokens: number | null; windowCapacity: number; chain?: ChainRule }
  | StepOp
  /** The stream's frame ended: the gather rule stops waiting for it. */
  | { op: 'end'; sid: number }
  /** The stream is gone: its queued steps are dropped and its slot returned. */
  | { op: 'close'; sid: number };

export type ToWorker = { type: 'ops'; ops: WorkerOp[] } | { type: 'release' };

/** What a step produced: logits [T, V] of its tokens, and the ids of the step chained after it (if any). */
export type StepOutcome = { logits: Float32Array; next?: number[] } | { error: string };

export type StepResult =
  | ({ req: number } & StepOutcome)
  /** A chained step's: the stream, the chain's first request and the step's position. */
  | ({ req: number; chained: { sid: number; position: number } } & StepOutcome);

/** Counters of one worker since it started. */
export interface WorkerStats {
  /** Decoder runs and the stream rows they held. */
  decoderRuns: number;
  decoderRows: number;
  /** Most rows seen in one decoder run. */
  maxRows: number;
  /** Vision (+ casa_kv) runs and the frames they encoded. */
  frameRuns: number;
  frames: number;
  /** Milliseconds spent in rounds of graph runs (including the copies around them). */
  busyMs: number;
  /** …of which inside onnxruntime: decoder runs, and vision + casa_kv runs. */
  decoderMs: number;
  frameMs: number;
  /** Streams open. */
  streams: number;
  /** Chained steps run, and the entries of those rolled back (the main thread sampled another token). */
  chainedSteps: number;
  chainedRolledBack: number;
}

/** Counters at zero (a worker's at its start). */
export function emptyWorkerStats(): WorkerStats {
  return {
    decoderRuns: 0,
    decoderRows: 0,
    maxRows: 0,
    frameRuns: 0,
    frames: 0,
    busyMs: 0,
    decoderMs: 0,
    frameMs: 0,
    streams: 0,
    chainedSteps: 0,
    chainedRolledBack: 0,
  };
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'results'; results: StepResult[]; stats: WorkerStats };

/**
 * Messages between the main thread and an inference worker of the batched engine
 * (docs/architecture.md §Batching). The main thread keeps each stream's protocol, sampling
 * and eviction bookkeeping; a worker keeps the streams' K/V and runs the graphs. Operations
 * made during one turn of the main event loop travel as one `ops` message; a worker answers
 * each graph run with one `results` message.
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

/** A stream's next step: text tokens fed into its caches, after an optional frame start. */
export interface StepOp {
  op: 'step';
  sid: number;
  req: number;
  ids: number[];
  /** Self-attention position of ids[0]: the stream's cache length once `evict` is applied. */
  position: number;
  /** Entries to evict first (decided by the stream's ContextBook on the main thread). */
  evict?: Eviction;
  /** A frame starts with this step: its NCHW pixels (vision → casa_kv → window swap first). */
  pixels?: Float32Array;
}

export type WorkerOp =
  /** A new stream: its cache cap (null: unbounded) and the window tokens to preallocate. */
  | { op: 'open'; sid: number; maxTokens: number | null; windowCapacity: number }
  | StepOp
  /** The stream's frame ended: the gather rule stops waiting for it. */
  | { op: 'end'; sid: number }
  /** The stream is gone: its queued steps are dropped and its slot returned. */
  | { op: 'close'; sid: number };

export type ToWorker = { type: 'ops'; ops: WorkerOp[] } | { type: 'release' };

export type StepResult =
  /** Logits [T, V] of the step's tokens. */
  | { req: number; logits: Float32Array }
  | { req: number; error: string };

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
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'results'; results: StepResult[]; stats: WorkerStats };

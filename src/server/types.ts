import type { CaptionPipeline } from '../pipeline-types.js';
import type { ServeConfig, StreamConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';

export type { StreamConfig, ServeConfig };

/**
 * Creates the caption pipeline (ingest → caption session) of one stream. Called again for
 * every restart of that stream. It must not load the model itself: the model is loaded once
 * (see `prepare`) and shared by every pipeline. Throwing, or an `events` iterator that
 * throws, is a failure of that stream only; an iterator that ends is the input ending.
 */
export type PipelineFactory = (stream: StreamConfig, ctx: { signal?: AbortSignal; logger: Logger }) => CaptionPipeline;

/** Optional counters a pipeline may expose; read when /metrics is scraped. */
export interface PipelineStats {
  /** Frames received from ingest since this pipeline started. */
  framesIn?: number;
  /** Frames dropped (session behind) since this pipeline started. */
  framesDropped?: number;
  /** Text tokens currently in the session's KV cache. */
  kvTokens?: number;
}

/** A CaptionPipeline that also reports stats (optional extension of the contract). */
export interface CaptionPipelineWithStats extends CaptionPipeline {
  stats?(): PipelineStats;
}

/** Loads the shared model before any stream starts; /readyz reports it. */
export type PrepareHook = (config: ServeConfig) => Promise<{ modelName: string }>;

export type ModelState =
  | { state: 'loading'; name: string }
  | { state: 'loaded'; name: string; loadedAt: string }
  | { state: 'failed'; name: string; error: string };

/**
 * The pipeline contract (owned here, by the lower layer): what a caption pipeline of one
 * stream is, what it may report, and the two hooks through which the daemon (src/server,
 * a layer above) creates pipelines and loads the shared model. The CLI, the daemon and
 * the benchmarks consume it; src/pipeline/pipeline.ts implements it.
 */
import type { CaptionSessionLike } from '../engine.js';
import type { UnsequencedEvent } from '../events.js';
import type { ServeConfig, StreamConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';

/**
 * A running caption pipeline for one stream (ingest → caption session). The daemon stamps
 * each event with the stream id and seq (src/events.ts stampEvent).
 */
export interface CaptionPipeline {
  /** Events in order; the iterator ends when the stream ends or the pipeline is stopped. */
  readonly events: AsyncIterable<UnsequencedEvent>;
  /** Stops ingest after the frame in hand and resolves once every child process is gone. */
  stop(): Promise<void>;
}

/** Optional counters a pipeline may expose; the daemon reads them when /metrics is scraped. */
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

export interface StopOptions {
  /**
   * Cut the frame in hand at the next token instead of finishing it (its caption is not
   * emitted). Default false: the frame in hand is finished and its caption emitted.
   */
  immediate?: boolean;
}

/** Everything createCaptionPipeline's pipeline counts. */
export interface CaptionPipelineStats extends Required<PipelineStats> {
  framesCaptioned: number;
  /**
   * How far the caption session is behind the newest frame, in milliseconds: how long the
   * frame in hand (or the last one captioned) had been waiting when the session got to it;
   * 0 when the session was waiting for it (docs/protocol.md, `status`).
   */
  lagMs: number;
}

/** The pipeline createCaptionPipeline returns: the contract plus what the CLI and benchmarks use. */
export interface CaptionPipelineHandle extends CaptionPipelineWithStats {
  stop(options?: StopOptions): Promise<void>;
  stats(): CaptionPipelineStats;
  /** Duration of a file input (for progress), undefined for live inputs. */
  durationSeconds(): Promise<number | undefined>;
  /** Resolves with the session once it is open (rejects when the model or session fails). */
  readonly session: Promise<CaptionSessionLike>;
  /** Resolves when the pipeline's run has ended (input ended, failed or stopped; no child left). */
  readonly stopped: Promise<void>;
}

/**
 * Creates the caption pipeline (ingest → caption session) of one stream. Called again for
 * every restart of that stream. The stream's `restart` block is its one retry policy: the
 * pipeline's ingest retries a live input's failures by it, and the daemon restarts the
 * pipeline by it for the failures the ingest does not retry. It must not load the model itself: the model is loaded once
 * (see `PrepareHook`) and shared by every pipeline. Throwing, or an `events` iterator that
 * throws, is a failure of that stream only; an iterator that ends is the input ending.
 */
export type PipelineFactory = (stream: StreamConfig, ctx: PipelineContext) => CaptionPipeline;

/** What the daemon gives a pipeline it creates. */
export interface PipelineContext {
  signal?: AbortSignal;
  logger: Logger;
  /** Called with each ingest attempt's start-up time (ffmpeg spawned → first frame, ms). */
  onStartup?: (startupMs: number) => void;
}

/** Loads the shared model before any stream starts; the daemon's /readyz reports it. */
export type PrepareHook = (config: ServeConfig) => Promise<{ modelName: string }>;

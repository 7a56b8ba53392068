/**
 * The daemon's hooks (PrepareHook and PipelineFactory, src/pipeline/types.ts): `prepare`
 * loads the config's model once before any stream starts; `pipelineFactory` makes one
 * caption pipeline per stream (re)start on the shared model, or on the stream's own
 * `model` (loaded once, kept in a small registry). Worker models (torch:, hf:) get the
 * config's `worker` settings; when their worker dies, the stream's pipeline fails, its
 * runner restarts it, and the model starts a new worker.
 */
import path from 'node:path';
import { SAMPLING_FIELDS, type LoadOptions, type SessionOptions, type WorkerOptions } from '../engine.js';
import { hlsDir, type EngineConfig, type GenerationOverrides, type HlsConfig, type ServeConfig, type StreamConfig, type WorkerConfig } from '../config/schema.js';
import type { HlsOutputOptions } from '../ingest/hls-output.js';
import type { DecodeOptions } from '../ingest/index.js';
import { createLogger } from '../logger.js';
import { createCaptionPipeline } from './pipeline.js';
import type { CaptionPipelineHandle, PipelineFactory, PrepareHook } from './types.js';
import { ModelRegistry, loadModelRef, resolveModelRef } from './models.js';

export interface DaemonHooksOptions {
  loadOptions?: LoadOptions;
  /** Where worker models log (their process's stdout/stderr lines, restarts). */
  logger?: WorkerOptions['logger'];
  /** Replaces the model registry (tests). */
  registry?: ModelRegistry;
  env?: NodeJS.ProcessEnv;
}

export interface DaemonHooks {
  prepare: PrepareHook;
  pipelineFactory: PipelineFactory;
  registry: ModelRegistry;
}

/** Config `generation` overrides → engine session options. */
export function sessionOptionsFrom(g: GenerationOverrides): SessionOptions {
  // The config names these as the engine does (src/config/schema.ts); only the seed is converted.
  const sameName = [
    ...SAMPLING_FIELDS,
    'maxNewTokensPerFrame',
    'maxContextTokens',
    'sinkTokens',
    'realtimeDeadline',
    'prompt',
  ] as const satisfies ReadonlyArray<keyof GenerationOverrides & keyof SessionOptions>;
  const o: SessionOptions = {};
  for (const key of sameName) copyDefined(o, g, key);
  if (g.seed !== undefined) o.seed = g.seed >>> 0;
  return o;
}

/** A stream's `hls` settings → the ingest's HLS output (the video part; the subtitles are a sink's). */
function hlsOutput(h: HlsConfig, dir: string): HlsOutputOptions {
  return { dir, segmentSeconds: h.segmentSeconds, listSize: h.listSize, height: h.height, preset: h.preset };
}

/** Copies `from[key]` to `to[key]` when defined; `from` type-checks only if its field has the engine's type. */
function copyDefined<K extends keyof GenerationOverrides & keyof SessionOptions>(to: Pick<SessionOptions, K>, from: Pick<SessionOptions, K>, key: K): void {
  const value = from[key];
  if (value !== undefined) to[key] = value;
}

/** Config `worker` → the worker engine's options. */
export function workerOptionsFrom(w: WorkerConfig | undefined, logger: WorkerOptions['logger'], env: NodeJS.ProcessEnv): WorkerOptions {
  return {
    env,
    ...(logger ? { logger } : {}),
    ...(w?.python !== undefined ? { python: w.python } : {}),
    ...(w?.device !== undefined ? { device: w.device } : {}),
    ...(w?.frameTimeoutMs !== undefined ? { frameTimeoutMs: w.frameTimeoutMs } : {}),
    ...(w?.loadTimeoutMs !== undefined ? { loadTimeoutMs: w.loadTimeoutMs } : {}),
  };
}

/** Config `engine` → engine load options (absent fields: the engine's defaults). */
export function loadOptionsFrom(e: EngineConfig): LoadOptions {
  const o: LoadOptions = {};
  if (e.batch === false) o.batch = false;
  else if (e.batch !== undefined || e.threads?.workers !== undefined) {
    o.batch = {};
    if (e.batch?.maxSize !== undefined) o.batch.maxSize = e.batch.maxSize;
    if (e.batch?.gatherMs !== undefined) o.batch.gatherMs = e.batch.gatherMs;
    if (e.batch?.frameGatherMs !== undefined) o.batch.frameGatherMs = e.batch.frameGatherMs;
    if (e.threads?.workers !== undefined) o.batch.workers = e.threads.workers;
  }
  if (e.threads?.intraOp !== undefined) o.intraOpNumThreads = e.threads.intraOp;
  return o;
}

export function createDaemonHooks(options: DaemonHooksOptions = {}): DaemonHooks {
  const env = options.env ?? process.env;
  // The config's `engine` and `worker` settings, known once prepare has run (before any model loads).
  let engine: LoadOptions = {};
  let worker: WorkerOptions = workerOptionsFrom(undefined, options.logger, env);
  // The config's `ingest.decode` settings, for every stream's ffmpeg.
  let decode: DecodeOptions | undefined;
  const registry =
    options.registry ??
    new ModelRegistry({ load: (ref, opts) => loadModelRef(ref, { ...options.loadOptions, ...opts, ...engine, worker }, env) });
  let baseDir = process.cwd();
  let dataDir = baseDir;

  const prepare: PrepareHook = async (config: ServeConfig) => {
    baseDir = config.configPath ? path.dirname(config.configPath) : process.cwd();
    dataDir = config.dataDir;
    engine = loadOptionsFrom(config.engine ?? {}); // absent in configs built by hand (tests)
    worker = workerOptionsFrom(config.worker, options.logger ?? createLogger({ level: config.log?.level ?? 'info', base: { component: 'worker' } }), env);
    decode = config.ingest?.decode;
    const model = await registry.load(resolveModelRef(config.model, baseDir, env), true);
    return { modelName: model.name };
  };

  const pipelineFactory: PipelineFactory = (stream: StreamConfig, ctx) => {
    const dir = resolveModelRef(stream.model, baseDir, env);
    const lease = registry.acquire(dir);
    const pipeline: CaptionPipelineHandle = createCaptionPipeline({
      model: lease.model,
      input: stream.input,
      fps: stream.fps,
      generation: sessionOptionsFrom(stream.generation),
      logger: ctx.logger,
      source: {
        // One retry policy per stream: the ingest retries a live input by the stream's restart block.
        reconnect: stream.restart,
        ...(decode ? { decode } : {}),
        // The stream's HLS video: a second output of the same ffmpeg, on every attempt.
        ...(stream.hls?.enabled ? { hls: hlsOutput(stream.hls, hlsDir(dataDir, stream.id)) } : {}),
      },
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      ...(ctx.onStartup ? { onStartup: ctx.onStartup } : {}),
    });
    // The model reference is held until the pipeline's run has ended.
    void pipeline.stopped.finally(() => lease.release());
    return pipeline;
  };

  return { prepare, pipelineFactory, registry };
}

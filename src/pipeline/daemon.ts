/**
 * The daemon's hooks (PrepareHook and PipelineFactory, src/pipeline/types.ts): `prepare`
 * loads the config's model once before any stream starts; `pipelineFactory` makes one
 * caption pipeline per stream (re)start on the shared model, or on the stream's own
 * `model` (loaded once, kept in a small registry).
 */
import path from 'node:path';
import type { LoadOptions, SessionOptions } from '../engine.js';
import type { DecodeOptions } from '../ingest/index.js';
import type { EngineConfig, GenerationOverrides, ServeConfig, StreamConfig } from '../config/schema.js';
import { createCaptionPipeline } from './pipeline.js';
import type { CaptionPipelineHandle, PipelineFactory, PrepareHook } from './types.js';
import { loadModelDir, ModelRegistry, resolveModelRef } from './models.js';

export interface DaemonHooksOptions {
  loadOptions?: LoadOptions;
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
    'temperature',
    'topK',
    'maxNewTokensPerFrame',
    'maxContextTokens',
    'sinkTokens',
    'repetitionPenalty',
    'repetitionPenaltyDecay',
    'repetitionCountClamp',
    'eosBias',
  ] as const satisfies ReadonlyArray<keyof GenerationOverrides & keyof SessionOptions>;
  const o: SessionOptions = {};
  for (const key of sameName) {
    const value = g[key];
    if (value !== undefined) o[key] = value;
  }
  if (g.seed !== undefined) o.seed = g.seed >>> 0;
  return o;
}

/** Config `engine` → engine load options (absent fields: the engine's defaults). */
export function loadOptionsFrom(e: EngineConfig): LoadOptions {
  const o: LoadOptions = {};
  if (e.batch === false) o.batch = false;
  else if (e.batch !== undefined || e.threads?.workers !== undefined) {
    o.batch = {};
    if (e.batch?.maxSize !== undefined) o.batch.maxSize = e.batch.maxSize;
    if (e.batch?.gatherMs !== undefined) o.batch.gatherMs = e.batch.gatherMs;
    if (e.threads?.workers !== undefined) o.batch.workers = e.threads.workers;
  }
  if (e.threads?.intraOp !== undefined) o.intraOpNumThreads = e.threads.intraOp;
  return o;
}

export function createDaemonHooks(options: DaemonHooksOptions = {}): DaemonHooks {
  const env = options.env ?? process.env;
  // The config's `engine` settings, known once prepare has run (before any model loads).
  let engine: LoadOptions = {};
  // The config's `ingest.decode` settings, for every stream's ffmpeg.
  let decode: DecodeOptions | undefined;
  const registry =
    options.registry ??
    new ModelRegistry({ load: (dir, opts) => loadModelDir(dir, { ...options.loadOptions, ...opts, ...engine }, env) });
  let baseDir = process.cwd();
  const warnedPrompt = new Set<string>();

  const prepare: PrepareHook = async (config: ServeConfig) => {
    baseDir = config.configPath ? path.dirname(config.configPath) : process.cwd();
    engine = loadOptionsFrom(config.engine ?? {}); // absent in configs built by hand (tests)
    decode = config.ingest?.decode;
    const model = await registry.load(resolveModelRef(config.model, baseDir, env), true);
    return { modelName: model.name };
  };

  const pipelineFactory: PipelineFactory = (stream: StreamConfig, ctx) => {
    const dir = resolveModelRef(stream.model, baseDir, env);
    if (stream.generation.prompt !== undefined && !warnedPrompt.has(stream.id)) {
      warnedPrompt.add(stream.id);
      ctx.logger.warn({ stream: stream.id }, 'generation.prompt is not supported by this runtime yet; the model\'s own prompt is used');
    }
    const lease = registry.acquire(dir);
    const pipeline: CaptionPipelineHandle = createCaptionPipeline({
      model: lease.model,
      input: stream.input,
      fps: stream.fps,
      generation: sessionOptionsFrom(stream.generation),
      logger: ctx.logger,
      // One retry policy per stream: the ingest retries a live input by the stream's restart block.
      source: { reconnect: stream.restart, ...(decode ? { decode } : {}) },
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      ...(ctx.onStartup ? { onStartup: ctx.onStartup } : {}),
    });
    // The model reference is held until the pipeline's run has ended.
    void pipeline.stopped.finally(() => lease.release());
    return pipeline;
  };

  return { prepare, pipelineFactory, registry };
}

/**
 * The daemon's hooks (src/server/types.ts): `prepare` loads the config's model once before
 * any stream starts; `pipelineFactory` makes one caption pipeline per stream (re)start on
 * the shared model, or on the stream's own `model` (loaded once, kept in a small registry).
 * Worker models (torch:, hf:) get the config's `worker` settings; when their worker dies,
 * the stream's pipeline fails, its runner restarts it, and the model starts a new worker.
 */
import path from 'node:path';
import type { LoadOptions, SessionOptions, WorkerOptions } from '../engine.js';
import type { GenerationOverrides, WorkerConfig } from '../config/schema.js';
import { createLogger } from '../logger.js';
import type { PipelineFactory, PrepareHook, ServeConfig, StreamConfig } from '../server/types.js';
import { createCaptionPipeline, type CaptionPipelineHandle } from './pipeline.js';
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
  const o: SessionOptions = {};
  if (g.temperature !== undefined) o.temperature = g.temperature;
  if (g.topK !== undefined) o.topK = g.topK;
  if (g.maxNewTokensPerFrame !== undefined) o.maxNewTokensPerFrame = g.maxNewTokensPerFrame;
  if (g.maxContextTokens !== undefined) o.maxContextTokens = g.maxContextTokens;
  if (g.sinkTokens !== undefined) o.sinkTokens = g.sinkTokens;
  if (g.repetitionPenalty !== undefined) o.repetitionPenalty = g.repetitionPenalty;
  if (g.repetitionDecay !== undefined) o.repetitionPenaltyDecay = g.repetitionDecay;
  if (g.repetitionClamp !== undefined) o.repetitionCountClamp = g.repetitionClamp;
  if (g.eosBias !== undefined) o.eosBias = g.eosBias;
  if (g.stopBias !== undefined) o.stopBias = g.stopBias;
  if (g.noRepeatNgramSize !== undefined) o.noRepeatNgramSize = g.noRepeatNgramSize;
  if (g.noRepeatNgramWindow !== undefined) o.noRepeatNgramWindow = g.noRepeatNgramWindow;
  if (g.realtimeDeadline !== undefined) o.realtimeDeadline = g.realtimeDeadline;
  if (g.prompt !== undefined) o.prompt = g.prompt;
  if (g.seed !== undefined) o.seed = g.seed >>> 0;
  return o;
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

export function createDaemonHooks(options: DaemonHooksOptions = {}): DaemonHooks {
  const env = options.env ?? process.env;
  // The config's worker settings are known once `prepare` has run; every later load uses them.
  let worker: WorkerOptions = workerOptionsFrom(undefined, options.logger, env);
  const registry =
    options.registry ?? new ModelRegistry({ loadOptions: options.loadOptions ?? {}, load: (ref, opts) => loadModelRef(ref, { ...opts, worker }, env) });
  let baseDir = process.cwd();

  const prepare: PrepareHook = async (config: ServeConfig) => {
    baseDir = config.configPath ? path.dirname(config.configPath) : process.cwd();
    worker = workerOptionsFrom(config.worker, options.logger ?? createLogger({ level: config.log?.level ?? 'info', base: { component: 'worker' } }), env);
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
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    // The model reference is held until the pipeline's run has ended.
    void pipeline.stopped.finally(() => lease.release());
    return pipeline;
  };

  return { prepare, pipelineFactory, registry };
}

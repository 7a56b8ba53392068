/**
 * casa-live's runtime engine: the public API the CLI and the daemon are built on
 * (docs/architecture.md §Engine).
 *
 *   const model = await loadModel('models/casa-tiny');
 *   const session = await model.openSession({ temperature: 0 });
 *   for await (const ev of session.captionFrame(frame)) …   // token events, then the caption
 *   session.close();
 *   await model.release();
 *
 * Two engines implement the API (CaptionModel / CaptionSessionLike): the ONNX engine in
 * process (Model, below) and the worker engine (src/worker: a Python process, for
 * `torch:<bundle>`, `hf:<org>/<name>` and local Hugging Face directories; src/model-ref.ts).
 */
import path from 'node:path';
import { UsageError } from './errors.js';
import { loadBundleMeta, type BundleMeta, type LoadOptions } from './model/bundle.js';
import { newRunTimer, type RunTimer } from './model/graphs.js';
import type { ContextPolicy } from './model/kv-cache.js';
import type { Fusion, Manifest } from './model/manifest.js';
import type { Fit } from './ingest/types.js';
import type { BatchStats } from './model/batch/pool.js';
import type { ChainRule } from './model/batch/protocol.js';
import { Preprocessor } from './model/preprocess.js';
import type { DecoderBackend } from './session/backend.js';
import { startEngine, type Engine, type EngineInfo } from './session/engines.js';
import {
  chainRule,
  frameTextTokens,
  openCaptionSession,
  resolveSessionOptions,
  type CaptionSession,
  type SessionOptions,
} from './session/caption-session.js';
import type { SessionEvent } from './session/events.js';
import type { EngineFrame, FrameResult, ResolvedSessionOptions, SessionStats } from './session/caption-session.js';
import { isHfDir, parseModelRef } from './model-ref.js';
import { WorkerModel, type WorkerOptions } from './worker/index.js';

export type { LoadOptions, BatchOptions, ExecutionProvider } from './model/bundle.js';
export type { EngineInfo } from './session/engines.js';
export type { BatchStats } from './model/batch/pool.js';
export type { Manifest, Fusion } from './model/manifest.js';
export { FORMAT_VERSION } from './model/manifest.js';
export type { ContextPolicy } from './model/kv-cache.js';
export type { RunTimer } from './model/graphs.js';
export type { DecoderBackend, BackendStats } from './session/backend.js';
export type {
  CaptionSession,
  EngineFrame,
  SessionOptions,
  ResolvedSessionOptions,
  SessionStats,
  FrameResult,
} from './session/caption-session.js';
export type { SessionEvent, SessionTokenEvent, SessionCaptionEvent } from './session/events.js';
export type { TokenGranularity } from './session/detokenizer.js';
export { SAMPLING_FIELDS } from './session/sampler.js';
export type { Fit } from './ingest/types.js';

export { WorkerModel, type WorkerOptions } from './worker/index.js';

// ------------------------------------------------------------------ the API both engines implement

/** The frames a model takes: ingest scales to this size with this fit. */
export interface ModelImage {
  width: number;
  height: number;
  fit: Fit;
}

/** A loaded model of either engine: what the pipeline, the daemon and the CLI use. */
export interface CaptionModel {
  readonly name: string;
  readonly fusion: Fusion;
  /** Which engine runs it — 'onnx': in process; 'worker': a Python worker process. */
  readonly runtime: 'onnx' | 'worker';
  readonly image: ModelImage;
  /** Frames per second captioned unless the stream says otherwise. */
  readonly fps: number;
  /** Whether sessions take a `prompt` of their own (a bundle's prompt is fixed by training). */
  readonly acceptsPrompt: boolean;
  /** Token ids of the prompt, when the engine has them (the ONNX engine). */
  readonly promptIds?: readonly number[];
  openSession(opts?: SessionOptions): Promise<CaptionSessionLike>;
  release(): Promise<void>;
}

/** One stream's caption session of either engine. */
export interface CaptionSessionLike {
  readonly fusion: Fusion;
  /** The session's settings, defaults applied. */
  readonly options: ResolvedSessionOptions;
  /** Token events as they are sampled, then the frame's caption event. */
  captionFrame(frame: EngineFrame): AsyncGenerator<SessionEvent, void, undefined>;
  caption(frame: EngineFrame): Promise<FrameResult>;
  stats(): SessionStats;
  close(): void;
  readonly closed: boolean;
}

/** loadModel's options: the ONNX engine's, and the worker's for worker models. */
export interface ModelLoadOptions extends LoadOptions {
  worker?: WorkerOptions;
}

/** Options of Model.openBackend. */
export interface BackendOptions {
  /** Cache cap and eviction; each field defaults to the manifest's `context`, the sink to the prompt's length. */
  policy?: Partial<ContextPolicy>;
  /** Collects the time spent inside onnxruntime's run. */
  timer?: RunTimer;
  /** CASA window tokens preallocated (default 32; the window grows if a frame's text is longer). */
  windowCapacity?: number;
  /** Greedy sessions: how the batched engine may chain their steps (ignored by the unbatched one). */
  chain?: ChainRule;
}

/**
 * A loaded, validated model bundle. Its streams share its graphs: in inference worker
 * threads, batched (the default for format-version-2 CASA bundles), or one stream per run on
 * the calling thread (`engine.batched` false, with the reason).
 */
export class Model implements CaptionModel {
  readonly runtime = 'onnx' as const;
  /** A bundle's prompt is fixed by training. */
  readonly acceptsPrompt = false;
  readonly dir: string;
  readonly manifest: Manifest;
  private readonly bundle: BundleMeta;
  private readonly core: Engine;
  private readonly sessions = new Set<CaptionSession>();
  private released = false;

  private constructor(bundle: BundleMeta, core: Engine) {
    this.bundle = bundle;
    this.core = core;
    this.dir = bundle.dir;
    this.manifest = bundle.manifest;
  }

  /** Loads and validates a bundle directory; a bad bundle throws one ModelError naming the file. */
  static async load(dir: string, opts: LoadOptions = {}): Promise<Model> {
    const meta = loadBundleMeta(dir);
    return new Model(meta, await startEngine(meta, opts));
  }

  /** How the model runs its streams (batched, with its settings, or not and why). */
  get engine(): EngineInfo {
    return this.core.info;
  }

  /** The batched engine's counters (graph runs, rows per run, …); undefined when unbatched. */
  batchStats(): BatchStats | undefined {
    return this.core.stats();
  }

  get name(): string {
    return this.manifest.name;
  }

  get fusion(): Fusion {
    return this.manifest.fusion;
  }

  get image(): ModelImage {
    const { width, height, fit } = this.manifest.image;
    return { width, height, fit };
  }

  get fps(): number {
    return this.manifest.generation.fps;
  }

  /** Token ids of the prompt prefilled in window 0. */
  get promptIds(): readonly number[] {
    return this.bundle.promptIds;
  }

  /** Open sessions. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Ids of `text` (special tokens written literally are recognised). */
  encode(text: string): number[] {
    return this.bundle.tokenizer.encode(text);
  }

  /** Text of `ids` (special tokens left out). */
  decode(ids: readonly number[]): string {
    return this.bundle.tokenizer.decode(ids);
  }

  /** Opens a caption session for one stream and prefills the prompt. */
  async openSession(opts: SessionOptions = {}): Promise<CaptionSession> {
    this.assertLive();
    const { promptIds, frameOpeningIds } = this.bundle;
    const options = resolveSessionOptions(this.manifest, promptIds.length, frameOpeningIds.length, opts);
    const timer = newRunTimer();
    const chain = chainRule(this.manifest, options);
    const backend = this.openBackend({
      policy: { maxTokens: options.maxContextTokens, sinkTokens: options.sinkTokens, evictChunk: options.evictChunk },
      timer,
      windowCapacity: frameTextTokens(frameOpeningIds.length, options.maxNewTokensPerFrame),
      ...(chain ? { chain } : {}),
    });
    let session: CaptionSession;
    try {
      session = await openCaptionSession({
        manifest: this.manifest,
        tokenizer: this.bundle.tokenizer,
        preprocessor: new Preprocessor(this.manifest.image, options.fit),
        backend,
        promptIds,
        frameOpeningIds,
        options,
        timer,
        onClose: () => this.sessions.delete(session),
      });
    } catch (err) {
      this.assertLive(); // released while the prompt was prefilled: say that, not onnxruntime's "disposed"
      throw err;
    }
    if (this.released) session.close();
    this.assertLive();
    this.sessions.add(session);
    return session;
  }

  /**
   * Low level: a bare decoder backend (caches and graph runs, no protocol or sampling), as
   * the parity harness and the invariant tests drive it.
   */
  openBackend(opts: BackendOptions = {}): DecoderBackend {
    this.assertLive();
    const { policy, timer, windowCapacity = 32, chain } = opts;
    const full: ContextPolicy = {
      maxTokens: policy?.maxTokens ?? this.manifest.context.maxContextTokens,
      sinkTokens: policy?.sinkTokens ?? this.bundle.promptIds.length,
      evictChunk: policy?.evictChunk ?? this.manifest.context.evictChunk,
    };
    return this.core.openBackend(full, windowCapacity, timer, chain);
  }

  /** The frame preprocessing of this model (resize with `fit`, normalise). */
  preprocessor(fit?: Fit): Preprocessor {
    return new Preprocessor(this.manifest.image, fit);
  }

  /** Closes every session, ends the inference workers and releases onnxruntime. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const s of [...this.sessions]) s.close();
    await this.core.release();
  }

  private assertLive(): void {
    if (this.released) throw new UsageError(`model ${this.manifest.name} has been released`);
  }
}

/**
 * Loads a model by reference (src/model-ref.ts): a bundle directory → the ONNX engine (see
 * Model.load); `torch:<bundle>`, `hf:<org>/<name>` or a local Hugging Face directory → the
 * worker engine (a Python process is started; see src/worker). Relative paths are taken
 * from the working directory.
 */
export async function loadModel(ref: string, opts: ModelLoadOptions = {}): Promise<CaptionModel> {
  const { worker, ...onnx } = opts; // the ONNX engine's options go to its inference threads: nothing else
  const r = parseModelRef(ref);
  if (r.engine === 'worker') {
    const model = r.adapter === 'torch' ? path.resolve(r.target) : isHfDir(r.target) ? path.resolve(r.target) : r.target;
    return WorkerModel.load({ adapter: r.adapter, model }, worker);
  }
  if (isHfDir(r.target)) return WorkerModel.load({ adapter: 'hf', model: path.resolve(r.target) }, worker);
  return Model.load(r.target, onnx);
}

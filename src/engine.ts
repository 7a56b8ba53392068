/**
 * casa-live's runtime engine: the public API the CLI and the daemon are built on
 * (docs/architecture.md §Engine).
 *
 *   const model = await loadModel('models/casa-tiny');
 *   const session = await model.openSession({ temperature: 0 });
 *   for await (const ev of session.captionFrame(frame)) …   // token events, then the caption
 *   session.close();
 *   await model.release();
 */
import { ModelError, UsageError } from './errors.js';
import { loadBundle, type Bundle, type LoadOptions } from './model/bundle.js';
import {
  CasaDecoderGraph,
  CasaKvGraph,
  InsertionDecoderGraph,
  newRunTimer,
  VisionGraph,
  type RunTimer,
} from './model/graphs.js';
import type { ContextPolicy } from './model/kv-cache.js';
import type { Fusion, Manifest } from './model/manifest.js';
import type { Fit } from './ingest/types.js';
import { Preprocessor } from './model/preprocess.js';
import { inverseFrequencies } from './model/rope.js';
import type { DecoderBackend } from './session/backend.js';
import { CasaBackend } from './session/casa-backend.js';
import { CaptionSession, resolveSessionOptions, type SessionOptions } from './session/caption-session.js';
import { InsertionBackend } from './session/insertion-backend.js';

export type { LoadOptions, ExecutionProvider } from './model/bundle.js';
export type { Manifest, Fusion } from './model/manifest.js';
export { FORMAT_VERSION } from './model/manifest.js';
export type { ContextPolicy } from './model/kv-cache.js';
export type { DecoderBackend, BackendStats } from './session/backend.js';
export {
  CaptionSession,
  type EngineFrame,
  type SessionOptions,
  type ResolvedSessionOptions,
  type SessionStats,
  type FrameResult,
} from './session/caption-session.js';
export type { SessionEvent, SessionTokenEvent, SessionCaptionEvent } from './session/events.js';
export type { TokenGranularity } from './session/detokenizer.js';
export type { Fit } from './ingest/types.js';

interface Graphs {
  vision: VisionGraph;
  decoder: CasaDecoderGraph | InsertionDecoderGraph;
  casaKv?: CasaKvGraph;
}

/** A loaded, validated model bundle. Sessions share its onnxruntime sessions. */
export class Model {
  readonly dir: string;
  readonly manifest: Manifest;
  private readonly bundle: Bundle;
  private readonly graphs: Graphs;
  private readonly invFreq: Float64Array;
  private readonly sessions = new Set<CaptionSession>();
  private released = false;

  private constructor(bundle: Bundle) {
    this.bundle = bundle;
    this.dir = bundle.dir;
    this.manifest = bundle.manifest;
    const m = bundle.manifest;
    const s = bundle.sessions;
    const vision = new VisionGraph(s.vision, m.image.width, m.image.height);
    this.graphs =
      m.fusion === 'casa' && s.casaKv
        ? { vision, decoder: new CasaDecoderGraph(s.decoder), casaKv: new CasaKvGraph(s.casaKv) }
        : { vision, decoder: new InsertionDecoderGraph(s.decoder) };
    this.invFreq = inverseFrequencies(m.decoder.headDim, m.decoder.ropeTheta);
  }

  /** Loads and validates a bundle directory; a bad bundle throws one ModelError naming the file. */
  static async load(dir: string, opts: LoadOptions = {}): Promise<Model> {
    return new Model(await loadBundle(dir, opts));
  }

  get name(): string {
    return this.manifest.name;
  }

  get fusion(): Fusion {
    return this.manifest.fusion;
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
    const options = resolveSessionOptions(this.manifest, this.bundle.promptIds.length, this.bundle.frameOpeningIds.length, opts);
    const timer = newRunTimer();
    const windowCapacity = 2 + this.bundle.frameOpeningIds.length + options.maxNewTokensPerFrame + 1;
    const backend = this.openBackend(
      { maxTokens: options.maxContextTokens, sinkTokens: options.sinkTokens, evictChunk: options.evictChunk },
      timer,
      windowCapacity,
    );
    let session: CaptionSession | undefined;
    session = new CaptionSession({
      manifest: this.manifest,
      tokenizer: this.bundle.tokenizer,
      preprocessor: new Preprocessor(this.manifest.image, options.fit),
      backend,
      promptIds: this.bundle.promptIds,
      frameOpeningIds: this.bundle.frameOpeningIds,
      options,
      timer,
      onClose: () => {
        if (session) this.sessions.delete(session);
      },
    });
    this.sessions.add(session);
    try {
      await session.prefill();
    } catch (err) {
      session.close();
      throw err;
    }
    return session;
  }

  /**
   * Low level: a bare decoder backend (caches and graph runs, no protocol or sampling), as
   * the parity harness and the invariant tests drive it. The cap defaults to the manifest's.
   */
  openBackend(policy?: Partial<ContextPolicy>, timer?: RunTimer, windowCapacity = 32): DecoderBackend {
    this.assertLive();
    const full: ContextPolicy = {
      maxTokens: policy?.maxTokens ?? this.manifest.context.maxContextTokens,
      sinkTokens: policy?.sinkTokens ?? this.bundle.promptIds.length,
      evictChunk: policy?.evictChunk ?? this.manifest.context.evictChunk,
    };
    const g = this.graphs;
    if (g.decoder instanceof CasaDecoderGraph) {
      if (!g.casaKv) throw new ModelError(`${this.dir}: casa bundle without casa_kv graph`);
      return new CasaBackend(this.manifest, { vision: g.vision, casaKv: g.casaKv, decoder: g.decoder }, full, this.invFreq, windowCapacity, timer);
    }
    return new InsertionBackend(this.manifest, { vision: g.vision, decoder: g.decoder }, full, this.invFreq, timer);
  }

  /** The frame preprocessing of this model (resize with `fit`, normalise). */
  preprocessor(fit?: Fit): Preprocessor {
    return new Preprocessor(this.manifest.image, fit);
  }

  /** Closes every session and releases the onnxruntime sessions. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const s of [...this.sessions]) s.close();
    const s = this.bundle.sessions;
    await Promise.allSettled([s.vision.release(), s.decoder.release(), ...(s.casaKv ? [s.casaKv.release()] : [])]);
  }

  private assertLive(): void {
    if (this.released) throw new UsageError(`model ${this.manifest.name} has been released`);
  }
}

/** Loads and validates a model bundle (see Model.load). */
export function loadModel(dir: string, opts: LoadOptions = {}): Promise<Model> {
  return Model.load(dir, opts);
}

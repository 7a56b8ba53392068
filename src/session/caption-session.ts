/**
 * One stream's caption session: the per-stream caption protocol of DESIGN §3 over a
 * decoder backend (CASA or the insertion twin).
 *
 * State machine (openCaptionSession prefills the prompt, window 0, and hands the session out ready):
 *   ready ──captionFrame(frame)──▶ in-frame ──▶ ready
 *     in-frame: preprocess → vision (→ casa_kv, window swap) → prefill [preImage, postImage]
 *               (+ frameOpening on the first frame) → sample ≤ maxNewTokensPerFrame tokens,
 *               each pushed out and fed (with realtimeDeadline, until the frame's 1/fps
 *               budget is spent; a sampled stop token ends the text, not fed yet; a text
 *               cut by the budget or deadline keeps its last token for the closing step) →
 *               the caption event → feed the stop token (the one sampled, else the one the
 *               model sampled last: EOS for the bundles), with that last token in one step →
 *               the backend is told the frame ended (the batched engine stops waiting for it)
 *   ready / failed / in-frame ──close()──▶ closed (a step still waiting rejects; closed stays closed)
 *   in-frame ──decoder failure──▶ failed (every later call throws; a failure feeding the
 *               final stop token comes after the frame's caption event)
 *
 * A frame the consumer stops reading half way (break out of the iteration) is still
 * closed properly: a stop token is fed, so every window's text ends with one as in training.
 */
import { randomInt } from 'node:crypto';
import { CasaLiveError, InputError, UsageError } from '../errors.js';
import type { Fit } from '../ingest/types.js';
import type { Manifest } from '../model/manifest.js';
import type { Preprocessor, RgbFrame } from '../model/preprocess.js';
import type { BundleTokenizer } from '../model/tokenizer.js';
import type { BackendStats, DecoderBackend } from './backend.js';
import { StreamDetokenizer, type TokenGranularity } from './detokenizer.js';
import type { SessionCaptionEvent, SessionEvent, SessionTokenEvent } from './events.js';
import { Sampler, type SamplerSettings } from './sampler.js';
import { assertSessionReady, collectFrame, type SessionState } from './session-state.js';
import type { RunTimer } from '../model/graphs.js';
import type { ChainRule } from '../model/batch/protocol.js';

/** A video frame: the same shape as src/ingest's Frame. */
export interface EngineFrame extends RgbFrame {
  /** 0, 1, 2, … over the life of the source. */
  index: number;
  /** Stream time in seconds. */
  ptsSeconds: number;
  /** Date.now() when the frame arrived (for latencyMs). */
  receivedAt: number;
}

/** Session settings; every field defaults to the bundle manifest's `generation` / `context`. */
export interface SessionOptions {
  /** 0 = greedy (argmax). */
  temperature?: number;
  topK?: number;
  repetitionPenalty?: number;
  repetitionPenaltyDecay?: number;
  repetitionCountClamp?: number;
  /** Ids the repetition penalty ignores (default: manifest tokens.penaltyIgnore). */
  penaltyIgnore?: number[];
  eosBias?: number;
  /** Apply the repetition penalty and EOS bias in greedy mode too (default false; see sampler.ts). */
  greedyProcessors?: boolean;
  maxNewTokensPerFrame?: number;
  /** PRNG seed (uint32; default: random, reported by stats().seed). */
  seed?: number;
  /** Cap of the self-attention cache in entries (Infinity: unbounded). */
  maxContextTokens?: number;
  /** Least number of tokens evicted at once. */
  evictChunk?: number;
  /** Tokens kept at the start of the cache (default: the prompt's length). */
  sinkTokens?: number;
  /** Frames per second of the stream: a caption's `end` is `start + 1/fps`. */
  fps?: number;
  /** Token events carry whole words (default) or every complete piece. */
  tokenGranularity?: TokenGranularity;
  /** Resize mode for frames not at the model's size (default: manifest image.fit). */
  fit?: Fit;
  /** Multiplicative bias on the stop tokens (after eosBias; 1 = none; see sampler.ts). */
  stopBias?: number;
  /** Windowed no-repeat n-gram across frames: n (0 = off) and the window of recent tokens. */
  noRepeatNgramSize?: number;
  noRepeatNgramWindow?: number;
  /**
   * Live pacing: once a frame's 1/fps budget (counted from the start of the frame) is spent,
   * its text ends at the next token (the stop token is fed), so captions keep pace with the
   * stream. Default false (files are captioned whole).
   */
  realtimeDeadline?: boolean;
  /** The stream's instruction, for models that take one (the worker's hf models); a bundle's prompt is fixed. */
  prompt?: string;
}

/** What resolveSessionOptions needs of a model: a bundle's manifest, or what a worker announced. */
export interface SessionDefaults {
  name: string;
  fusion: Manifest['fusion'];
  image: Pick<Manifest['image'], 'fit' | 'tokensPerFrame'>;
  tokens: Pick<Manifest['tokens'], 'eos' | 'penaltyIgnore'>;
  generation: Manifest['generation'] & Partial<Pick<SamplerSettings, 'stopBias' | 'noRepeatNgramSize' | 'noRepeatNgramWindow'>>;
  context: Manifest['context'];
  /** Every id that ends a frame's text (default [tokens.eos]). */
  stopIds?: readonly number[];
  /** Whether `prompt` may be set (default false: the prompt is fixed by training). */
  acceptsPrompt?: boolean;
}

export interface ResolvedSessionOptions {
  sampler: SamplerSettings;
  maxNewTokensPerFrame: number;
  maxContextTokens: number;
  evictChunk: number;
  sinkTokens: number;
  fps: number;
  tokenGranularity: TokenGranularity;
  fit: Fit;
  realtimeDeadline: boolean;
  prompt?: string;
}

export interface SessionStats extends BackendStats {
  /** Frames captioned. */
  frames: number;
  /** Text tokens of the latest frame's window (markers, sampled tokens, EOS). */
  lastFrameTokens: number;
  /** Tokens sampled in total (EOS included). */
  sampledTokens: number;
  /** Milliseconds spent inside onnxruntime's run, and in the whole frame calls. */
  ortMs: number;
  frameMs: number;
  /** Decoder / vision / casa_kv runs. */
  graphRuns: number;
  seed: number;
}

/** Result of `caption()`: the frame's events and the ids sampled. */
export interface FrameResult {
  caption: SessionCaptionEvent;
  tokens: SessionTokenEvent[];
  /** Ids sampled for the frame (EOS excluded). */
  ids: number[];
}

/**
 * Text tokens one frame's window holds at most: the pre- and post-image markers, the frame
 * opening (first frame only), the sampled tokens and EOS. The insertion twin's cache holds
 * the frame's image tokens on top (see resolveSessionOptions).
 */
export function frameTextTokens(frameOpeningLength: number, maxNewTokensPerFrame: number): number {
  return 2 + frameOpeningLength + maxNewTokensPerFrame + 1;
}

/** The ids that end a frame's text (resolved options always list them; the manifest's EOS otherwise). */
function stopIdsOf(manifest: Manifest, options: ResolvedSessionOptions): readonly number[] {
  return options.sampler.stopIds ?? [manifest.tokens.eos];
}

/**
 * How the batched engine may chain a greedy session's steps (src/model/batch/protocol.ts):
 * the single-token steps the frame loop below makes after a frame's first step (its last
 * token goes in with the stop token: closeText), its stop ids, and the stop bias its
 * sampler applies in greedy mode.
 * Sampling sessions are not chained: a guess would rarely be the token drawn.
 */
export function chainRule(manifest: Manifest, options: ResolvedSessionOptions): ChainRule | undefined {
  const s = options.sampler;
  if (s.temperature !== 0) return undefined;
  const biased = s.greedyProcessors === true;
  return {
    tokens: options.maxNewTokensPerFrame - 1,
    stopIds: [...stopIdsOf(manifest, options)],
    eosBias: biased ? s.eosBias : 0,
    stopBias: biased ? (s.stopBias ?? 1) : 1,
  };
}

function check(name: string, value: number, ok: boolean, rule: string): void {
  if (!ok) throw new UsageError(`session option ${name} = ${value} is invalid: ${rule}`);
}

/** Defaults from the manifest, overridden by `opts`; validated. */
export function resolveSessionOptions(
  manifest: SessionDefaults,
  promptLength: number,
  frameOpeningLength: number,
  opts: SessionOptions = {},
): ResolvedSessionOptions {
  const g = manifest.generation;
  const c = manifest.context;
  const stopBias = opts.stopBias ?? g.stopBias ?? 1;
  const ngram = opts.noRepeatNgramSize ?? g.noRepeatNgramSize ?? 0;
  const ngramWindow = opts.noRepeatNgramWindow ?? g.noRepeatNgramWindow ?? 60;
  const sampler: SamplerSettings = {
    temperature: opts.temperature ?? g.temperature,
    topK: opts.topK ?? g.topK,
    repetitionPenalty: opts.repetitionPenalty ?? g.repetitionPenalty,
    repetitionPenaltyDecay: opts.repetitionPenaltyDecay ?? g.repetitionPenaltyDecay,
    repetitionCountClamp: opts.repetitionCountClamp ?? g.repetitionCountClamp,
    penaltyIgnore: opts.penaltyIgnore ?? manifest.tokens.penaltyIgnore,
    eosBias: opts.eosBias ?? g.eosBias,
    eosId: manifest.tokens.eos,
    stopIds: manifest.stopIds ?? [manifest.tokens.eos],
    stopBias,
    noRepeatNgramSize: ngram,
    noRepeatNgramWindow: ngramWindow,
    seed: opts.seed ?? randomInt(0, 2 ** 32),
    greedyProcessors: opts.greedyProcessors ?? false,
  };
  if (opts.prompt !== undefined && !manifest.acceptsPrompt) {
    throw new UsageError(`The model ${manifest.name} was trained with a fixed prompt and takes no prompt of its own; remove the prompt (--prompt, generation.prompt).`);
  }
  const r: ResolvedSessionOptions = {
    sampler,
    maxNewTokensPerFrame: opts.maxNewTokensPerFrame ?? g.maxNewTokensPerFrame,
    maxContextTokens: opts.maxContextTokens ?? c.maxContextTokens,
    evictChunk: opts.evictChunk ?? c.evictChunk,
    sinkTokens: opts.sinkTokens ?? promptLength,
    fps: opts.fps ?? g.fps,
    tokenGranularity: opts.tokenGranularity ?? 'word',
    fit: opts.fit ?? manifest.image.fit,
    realtimeDeadline: opts.realtimeDeadline ?? false,
    ...(opts.prompt !== undefined ? { prompt: opts.prompt } : {}),
  };
  check('temperature', sampler.temperature, Number.isFinite(sampler.temperature) && sampler.temperature >= 0, 'must be ≥ 0');
  check('topK', sampler.topK, Number.isInteger(sampler.topK) && sampler.topK >= 0, 'must be an integer ≥ 0');
  check('repetitionPenalty', sampler.repetitionPenalty, sampler.repetitionPenalty > 0, 'must be > 0');
  check('repetitionPenaltyDecay', sampler.repetitionPenaltyDecay, sampler.repetitionPenaltyDecay >= 0 && sampler.repetitionPenaltyDecay <= 1, 'must be in [0, 1]');
  check('repetitionCountClamp', sampler.repetitionCountClamp, sampler.repetitionCountClamp >= 0, 'must be ≥ 0');
  check('eosBias', sampler.eosBias, Number.isFinite(sampler.eosBias), 'must be finite');
  check('stopBias', stopBias, stopBias > 0 && Number.isFinite(stopBias), 'must be > 0');
  check('noRepeatNgramSize', ngram, Number.isInteger(ngram) && ngram >= 0, 'must be an integer ≥ 0');
  check('noRepeatNgramWindow', ngramWindow, Number.isInteger(ngramWindow) && ngramWindow >= 1, 'must be an integer ≥ 1');
  check('seed', sampler.seed, Number.isInteger(sampler.seed) && sampler.seed >= 0 && sampler.seed < 2 ** 32, 'must be an integer in [0, 2^32)');
  check('maxNewTokensPerFrame', r.maxNewTokensPerFrame, Number.isInteger(r.maxNewTokensPerFrame) && r.maxNewTokensPerFrame >= 1, 'must be an integer ≥ 1');
  check('evictChunk', r.evictChunk, Number.isInteger(r.evictChunk) && r.evictChunk >= 1, 'must be an integer ≥ 1');
  check('sinkTokens', r.sinkTokens, Number.isInteger(r.sinkTokens) && r.sinkTokens >= 0, 'must be an integer ≥ 0');
  check('fps', r.fps, Number.isFinite(r.fps) && r.fps > 0, 'must be > 0');
  const cap = r.maxContextTokens;
  check('maxContextTokens', cap, cap === Infinity || (Number.isInteger(cap) && cap >= 1), 'must be an integer ≥ 1 or Infinity');
  const frameTokens =
    frameTextTokens(frameOpeningLength, r.maxNewTokensPerFrame) + (manifest.fusion === 'insertion' ? manifest.image.tokensPerFrame : 0);
  const least = Math.max(promptLength, r.sinkTokens + frameTokens);
  if (cap < least) {
    throw new UsageError(
      `session option maxContextTokens = ${cap} is too small: the prompt takes ${promptLength} tokens (sink ${r.sinkTokens}) and one frame up to ${frameTokens}; use at least ${least}`,
    );
  }
  return r;
}

/** What a session is made of (Model.openSession assembles them). */
export interface SessionParts {
  manifest: Manifest;
  tokenizer: BundleTokenizer;
  preprocessor: Preprocessor;
  backend: DecoderBackend;
  promptIds: readonly number[];
  frameOpeningIds: readonly number[];
  options: ResolvedSessionOptions;
  timer: RunTimer;
  onClose?: () => void;
}

type State = SessionState;

/**
 * Opens a caption session over `parts.backend`: prefills the prompt (window 0) and returns
 * the session ready for its first frame. If that fails, the backend is closed and the error
 * thrown. (Model.openSession is the public way in.)
 */
export async function openCaptionSession(parts: SessionParts): Promise<CaptionSession> {
  try {
    await parts.backend.feedText(parts.promptIds);
    return new CaptionSession(parts);
  } catch (err) {
    parts.backend.close();
    throw err;
  }
}

/** One stream's caption session; exported as a type only: open one with Model.openSession. */
class CaptionSession {
  readonly fusion: 'casa' | 'insertion';
  readonly options: ResolvedSessionOptions;
  private readonly manifest: Manifest;
  private readonly tokenizer: BundleTokenizer;
  private readonly preprocessor: Preprocessor;
  private readonly backend: DecoderBackend;
  private readonly sampler: Sampler;
  private readonly detok: StreamDetokenizer;
  private readonly frameOpeningIds: readonly number[];
  private readonly timer: RunTimer;
  private readonly pixels: Float32Array;
  private readonly onClose: (() => void) | undefined;
  private state: State = 'ready';
  private failure: unknown;
  private frames = 0;
  private lastFrameTokens = 0;
  private lastFrameIds: number[] = [];
  private sampled = 0;
  private frameMs = 0;
  private readonly stops: ReadonlySet<number>;
  /** The stop token fed when a frame's text is cut: the one the model sampled last. */
  private lastStop: number;

  /** Only openCaptionSession constructs a session, once the prompt is prefilled. */
  constructor(parts: SessionParts) {
    this.manifest = parts.manifest;
    this.fusion = parts.manifest.fusion;
    this.tokenizer = parts.tokenizer;
    this.preprocessor = parts.preprocessor;
    this.backend = parts.backend;
    this.frameOpeningIds = parts.frameOpeningIds;
    this.options = parts.options;
    this.timer = parts.timer;
    this.onClose = parts.onClose;
    this.sampler = new Sampler(parts.manifest.decoder.vocabSize, parts.options.sampler);
    this.sampler.fed(parts.promptIds);
    const stopIds = stopIdsOf(parts.manifest, parts.options);
    this.stops = new Set(stopIds);
    this.lastStop = stopIds[0] ?? parts.manifest.tokens.eos;
    this.detok = new StreamDetokenizer(parts.tokenizer, parts.options.tokenGranularity);
    this.pixels = new Float32Array(3 * parts.manifest.image.width * parts.manifest.image.height);
  }

  /**
   * Captions one frame. Yields token events as text is sampled, then the frame's caption
   * event. One frame at a time: calling again before the previous iteration finished throws.
   */
  async *captionFrame(frame: EngineFrame): AsyncGenerator<SessionEvent, void, undefined> {
    this.assertReady();
    this.state = 'in-frame';
    const started = performance.now();
    const V = this.manifest.decoder.vocabSize;
    const maxNew = this.options.maxNewTokensPerFrame;
    const deadline = this.options.realtimeDeadline ? started + 1000 / this.options.fps : Infinity;
    let frameOpen = false;
    let eosFed = false;
    let stopSampled = false;
    /** The last token sampled when the text ends without a stop token: fed with the stop token. */
    let unfed: number | undefined;
    let fedBefore = 0;
    const ids: number[] = [];
    try {
      const pixels = await this.preprocessor.pixels(frame, this.pixels);
      const markers = [this.manifest.tokens.preImage, this.manifest.tokens.postImage];
      const prefill = this.frames === 0 ? markers.concat(this.frameOpeningIds) : markers;
      fedBefore = this.backend.stats().textTokensFed;
      frameOpen = true;
      let logits = await this.backend.startFrame(pixels, prefill);
      this.sampler.fed(prefill);
      let row = logits.subarray((prefill.length - 1) * V, prefill.length * V);
      this.frames += 1;
      for (;;) {
        const tok = this.sampler.sample(row);
        this.sampler.observe(tok);
        this.sampled += 1;
        if (this.stops.has(tok)) {
          this.lastStop = tok;
          stopSampled = true;
          break; // fed below, after the caption
        }
        ids.push(tok);
        unfed = tok;
        const piece = this.detok.push(tok);
        if (piece) yield { type: 'token', frame: frame.index, pts: frame.ptsSeconds, text: piece };
        // The text's last token (budget spent, deadline passed): its logits would go unused,
        // so it is fed together with the stop token that closes the window, in one step.
        if (ids.length >= maxNew || performance.now() >= deadline) break;
        logits = await this.backend.feedText([tok]);
        unfed = undefined;
        row = logits.subarray(0, V);
      }
      const rest = this.detok.flush();
      if (rest) yield { type: 'token', frame: frame.index, pts: frame.ptsSeconds, text: rest };
      // The caption is complete once its last token is sampled: it goes out before the stop
      // token that closes the window is fed (a graph run whose logits nothing uses).
      yield this.captionEvent(frame, ids);
      await this.closeText(stopSampled, unfed);
      eosFed = true;
    } catch (err) {
      // The caches may be half updated: the session cannot go on.
      if (frameOpen || !(err instanceof InputError)) this.markFailed(err);
      throw err;
    } finally {
      if (this.state === 'in-frame') {
        // Normal end, or the consumer stopped reading: close the window with EOS.
        if (frameOpen && !eosFed) {
          try {
            await this.closeText(stopSampled, unfed);
          } catch (err) {
            this.markFailed(err);
          }
        }
        this.detok.flush();
        if (this.state === 'in-frame') this.state = 'ready';
      }
      if (frameOpen) {
        this.backend.endFrame();
        this.lastFrameTokens = this.backend.stats().textTokensFed - fedBefore;
        this.lastFrameIds = ids;
      }
      this.frameMs += performance.now() - started;
    }
  }

  private captionEvent(frame: EngineFrame, ids: readonly number[]): SessionCaptionEvent {
    return {
      type: 'caption',
      frame: frame.index,
      start: frame.ptsSeconds,
      end: frame.ptsSeconds + 1 / this.options.fps,
      text: this.tokenizer.decode(ids).trim(),
      latencyMs: Math.max(0, Date.now() - frame.receivedAt),
    };
  }

  /**
   * Closes the frame's text with a stop token: the one just sampled (the sampler has observed
   * it), or, for a text that was cut (token budget, deadline, consumer gone), the last stop
   * token sampled before. `unfed`, the text's last token when it was not fed yet, goes in the
   * same step (one graph run instead of two).
   */
  private async closeText(stopSampled: boolean, unfed: number | undefined): Promise<void> {
    if (!stopSampled) this.sampler.fed([this.lastStop]);
    await this.backend.feedText(unfed === undefined ? [this.lastStop] : [unfed, this.lastStop]);
  }

  /** Captions one frame and collects its events. */
  caption(frame: EngineFrame): Promise<FrameResult> {
    return collectFrame(this.captionFrame(frame), () => this.lastFrameIds.slice());
  }

  stats(): SessionStats {
    return {
      ...this.backend.stats(),
      frames: this.frames,
      lastFrameTokens: this.lastFrameTokens,
      sampledTokens: this.sampled,
      ortMs: this.timer.ortMs,
      frameMs: this.frameMs,
      graphRuns: this.timer.runs,
      seed: this.options.sampler.seed,
    };
  }

  /** Cache indices of the frames still in the self-attention cache (diagnostics: eviction keeps whole frames). */
  frameStarts(): number[] {
    return this.backend.frameStarts();
  }

  /** Ends the session and frees its caches. Idempotent. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.backend.close();
    this.onClose?.();
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** in-frame → failed (a session closed meanwhile stays closed). */
  private markFailed(err: unknown): void {
    if (this.state === 'closed') return;
    this.state = 'failed';
    this.failure = err;
  }

  private assertReady(): void {
    assertSessionReady(this.state, this.failure);
  }
}

export type { CaptionSession };

/**
 * A caption session served by a model worker: the engine's session API (token events as
 * sampled, then the frame's caption) over the worker protocol. Its lasting state — the text
 * KV cache and the sampler — lives in the worker; this side keeps the state machine:
 *
 *   ready ──captionFrame(frame)──▶ in-frame ──caption──▶ ready
 *   in-frame ──consumer stops reading──▶ (cut sent; the frame's end awaited) ──▶ ready
 *   in-frame ──worker error / worker gone / frame timeout──▶ failed (every later call throws)
 *   ready / failed / in-frame ──close()──▶ closed (closed stays closed)
 *
 * A malformed frame is refused before it is sent (InputError); the session stays ready.
 */
import { InputError } from '../errors.js';
import type { EngineFrame, FrameResult, ResolvedSessionOptions, SessionStats } from '../session/caption-session.js';
import { assertSessionReady, collectFrame, type SessionState } from '../session/session-state.js';
import type { SessionCaptionEvent, SessionEvent } from '../session/events.js';
import type { CaptionAnswer, WorkerClient } from './client.js';
import type { WorkerSessionStats } from './protocol.js';

type State = SessionState;

/** Token texts of the frame in progress, as an async iterable that ends with the frame. */
class TokenStream implements AsyncIterable<string> {
  private readonly items: string[] = [];
  private done = false;
  private failure: unknown;
  private wake: (() => void) | undefined;

  push(text: string): void {
    this.items.push(text);
    this.notify();
  }

  end(err?: unknown): void {
    this.done = true;
    this.failure = err;
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      const next = this.items.shift();
      if (next !== undefined) yield next;
      else if (this.done) {
        if (this.failure !== undefined) throw this.failure;
        return;
      } else await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

export interface WorkerSessionParts {
  client: WorkerClient;
  id: number;
  fusion: 'casa' | 'insertion';
  options: ResolvedSessionOptions;
  /** After each frame captioned without error (the model resets its restart backoff). */
  onFrame?: () => void;
  onClose?: () => void;
}

export class WorkerSession {
  readonly fusion: 'casa' | 'insertion';
  readonly options: ResolvedSessionOptions;
  private readonly client: WorkerClient;
  private readonly id: number;
  private state: State = 'ready';
  private failure: unknown;
  private worker: WorkerSessionStats = {};
  private lastFrameIds: number[] = [];
  private frameMs = 0;
  private workerFrameMs = 0;

  constructor(private readonly parts: WorkerSessionParts) {
    this.client = parts.client;
    this.id = parts.id;
    this.fusion = parts.fusion;
    this.options = parts.options;
  }

  async *captionFrame(frame: EngineFrame): AsyncGenerator<SessionEvent, void, undefined> {
    this.assertReady();
    checkFrame(frame);
    this.state = 'in-frame';
    const started = performance.now();
    const tokens = new TokenStream();
    const answer = this.client.frame(
      { t: 'frame', session: this.id, index: frame.index, pts: frame.ptsSeconds, width: frame.width, height: frame.height, rgb: frame.rgb },
      (text) => tokens.push(text),
    );
    answer.then(
      () => tokens.end(),
      (err: unknown) => tokens.end(err),
    );
    let finished = false;
    try {
      for await (const text of tokens) yield { type: 'token', frame: frame.index, pts: frame.ptsSeconds, text };
      const answered = await answer;
      this.record(answered);
      finished = true;
      yield this.captionEvent(frame, answered);
    } catch (err) {
      this.markFailed(err);
      throw err;
    } finally {
      if (!finished && this.state === 'in-frame') await this.cutFrame(answer);
      if (this.state === 'in-frame') this.state = 'ready';
      this.frameMs += performance.now() - started;
    }
  }

  /** Captions one frame and collects its events. */
  caption(frame: EngineFrame): Promise<FrameResult> {
    return collectFrame(this.captionFrame(frame), () => this.lastFrameIds.slice());
  }

  stats(): SessionStats {
    const w = (k: string): number => this.worker[k] ?? 0;
    return {
      kvTokens: w('kvTokens'),
      textKvTokens: w('textKvTokens'),
      imageKvTokens: w('imageKvTokens'),
      windowTokens: w('windowTokens'),
      imageTokens: w('imageTokens'),
      nextPosition: w('nextPosition'),
      evictions: w('evictions'),
      evictedTokens: w('evictedTokens'),
      kvBytes: w('kvBytes'),
      kvCapacityBytes: w('kvCapacityBytes'),
      textTokensFed: w('textTokensFed'),
      frames: w('frames'),
      lastFrameTokens: w('lastFrameTokens'),
      sampledTokens: w('sampledTokens'),
      ortMs: w('modelMs'),
      frameMs: this.frameMs,
      graphRuns: w('forwards'),
      seed: this.options.sampler.seed,
    };
  }

  /**
   * Time in captionFrame here, and inside the worker, summed over the frames: the difference
   * is what the protocol costs (framing, the socket, Python's side of it).
   */
  timings(): { frameMs: number; workerFrameMs: number } {
    return { frameMs: this.frameMs, workerFrameMs: this.workerFrameMs };
  }

  /** Ends the session (the worker drops its caches). Idempotent. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.client.request({ t: 'close', session: this.id }).catch(() => undefined);
    this.parts.onClose?.();
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Keeps the worker's figures and the frame's ids. */
  private record(a: CaptionAnswer): void {
    this.worker = a.stats;
    this.workerFrameMs += a.timings.frameMs;
    this.lastFrameIds = a.ids.slice();
    this.parts.onFrame?.();
  }

  private captionEvent(frame: EngineFrame, a: CaptionAnswer): SessionCaptionEvent {
    return {
      type: 'caption',
      frame: frame.index,
      start: frame.ptsSeconds,
      end: frame.ptsSeconds + 1 / this.options.fps,
      text: a.text,
      latencyMs: Math.max(0, Date.now() - frame.receivedAt),
    };
  }

  /** The consumer stopped reading: the worker ends the frame at its next token; wait for that. */
  private async cutFrame(answer: Promise<CaptionAnswer>): Promise<void> {
    this.client.cut(this.id);
    try {
      this.record(await answer);
    } catch (err) {
      this.markFailed(err);
    }
  }

  /** in-frame → failed, unless the error is the frame's own (InputError) or the session was closed meanwhile. */
  private markFailed(err: unknown): void {
    if (err instanceof InputError || this.state === 'closed') return;
    this.state = 'failed';
    this.failure = err;
  }

  private assertReady(): void {
    assertSessionReady(this.state, this.failure);
  }
}

function checkFrame(frame: EngineFrame): void {
  const { width, height } = frame;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new InputError(`frame has an invalid size ${width}x${height}`);
  }
  if (frame.rgb.length !== width * height * 3) {
    throw new InputError(`frame of ${width}x${height} has ${frame.rgb.length} bytes of rgb24, expected ${width * height * 3}`);
  }
}

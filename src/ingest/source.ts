/**
 * A frame source: one ffmpeg child at a time per stream, frames out as an async iterable,
 * liveness (watchdog, reconnects with backoff) and state as 'status' events. See docs/ingest.md.
 *
 * This module holds the source's lifecycle (source-state.ts: every state change happens here,
 * with the status it announces) and its public API. The jobs live next door:
 *   frame-handoff.ts   frames to the consumer (slot, waiter, backpressure or drop, maxFrames)
 *   ffmpeg-attempt.ts  one ffmpeg run (command, stderr, raw frames, how it ended)
 *   stream-clock.ts    frame index and pts across reconnects
 *   retry-loop.ts      attempts one after another, retry policy and waits, stall watchdog
 *   duration-probe.ts  ffprobe for durationSeconds()
 *   source-options.ts  defaults and validation of SourceOptions
 */
import { EventEmitter } from 'node:events';
import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import type { StreamState } from '../events.js';
import { resolveFfmpeg } from './binaries.js';
import { DurationProbe } from './duration-probe.js';
import { CorruptInputError, FileNotFoundError, FileUnreadableError, type IngestError } from './errors.js';
import { FfmpegAttempt, type AttemptHost } from './ffmpeg-attempt.js';
import { FrameHandoff, type HandoffMode } from './frame-handoff.js';
import type { ClassifiedInput } from './input.js';
import { RetryLoop } from './retry-loop.js';
import { ingestRetryPolicy } from './retry-policy.js';
import { effectiveStallMs, resolveSourceOptions, type ResolvedSourceOptions } from './source-options.js';
import { canTransition, SourceLifecycle } from './source-state.js';
import { ffmpegStarts } from './start-queue.js';
import { StreamClock } from './stream-clock.js';
import type { Frame, FrameSource, SourceKind, SourceOptions, SourceStatus } from './types.js';

/** Opens a source. Throws at once (UsageError / UnsupportedInputError) for bad options or inputs. */
export function openFrameSource(opts: SourceOptions): FrameSource {
  return new FfmpegFrameSource(opts);
}

type StatusExtra = Omit<SourceStatus, 'state' | 'droppedFrames' | 'reconnects'>;

class FfmpegFrameSource extends EventEmitter implements FrameSource {
  private readonly o: ResolvedSourceOptions;
  private readonly lifecycle = new SourceLifecycle();
  private readonly handoff: FrameHandoff;
  private readonly loop: RetryLoop;
  private readonly probe: DurationProbe;
  private readonly attemptHost: AttemptHost;
  private _kind: SourceKind;
  private _status: SourceStatus = { state: 'connecting', droppedFrames: 0, reconnects: 0 };
  private iterable: AsyncIterable<Frame> | undefined;
  private loopPromise: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;

  constructor(opts: SourceOptions) {
    super();
    const o = resolveSourceOptions(opts);
    this.o = o;
    this._kind = o.input.kind;
    this.handoff = new FrameHandoff(this.modeFor(this._kind), o.maxFrames, {
      taken: () => this.loop.touch(),
      limitReached: () => this.halt(),
    });
    this.loop = new RetryLoop({
      policy: ingestRetryPolicy(o.reconnect),
      lifecycle: this.lifecycle,
      stallMs: effectiveStallMs(o),
      connectMs: o.connectTimeoutMs,
      kind: () => this._kind,
      beforeAttempt: () => this.beginAttempt(),
      retrying: (error, delayMs, retry) => this.retrying(error, delayMs, retry),
    });
    this.probe = new DurationProbe({ input: o.input, binaries: o.binaries, ioTimeoutMs: o.ioTimeoutMs, log: o.log });
    this.attemptHost = this.makeAttemptHost();
  }

  get kind(): SourceKind {
    return this._kind;
  }

  get droppedFrames(): number {
    return this.handoff.droppedFrames;
  }

  get reconnects(): number {
    return this.loop.reconnects;
  }

  get status(): SourceStatus {
    return { ...this._status, droppedFrames: this.droppedFrames, reconnects: this.reconnects };
  }

  override on(event: 'status', fn: (s: SourceStatus) => void): this;
  override on(event: string | symbol, fn: (...args: any[]) => void): this;
  override on(event: string | symbol, fn: (...args: any[]) => void): this {
    return super.on(event, fn);
  }

  override off(event: 'status', fn: (s: SourceStatus) => void): this;
  override off(event: string | symbol, fn: (...args: any[]) => void): this;
  override off(event: string | symbol, fn: (...args: any[]) => void): this {
    return super.off(event, fn);
  }

  durationSeconds(): Promise<number | undefined> {
    return this.probe.duration();
  }

  // ---------------------------------------------------------------- consumer side

  frames(): AsyncIterable<Frame> {
    if (this.iterable) throw new UsageError('frames() of a frame source can be iterated only once.');
    const iterator: AsyncIterator<Frame> = {
      next: () => this.next(),
      return: async () => {
        await this.stop();
        return { done: true, value: undefined };
      },
    };
    this.iterable = { [Symbol.asyncIterator]: () => iterator };
    return this.iterable;
  }

  private async next(): Promise<IteratorResult<Frame>> {
    const frame = this.handoff.take();
    if (frame) return { done: false, value: frame };
    if (this.lifecycle.windingDown || this.lifecycle.over) return this.endResult();
    this.start();
    return this.handoff.wait();
  }

  /** Once the run loop has exited (no child left): done, or the fatal error once. */
  private async endResult(): Promise<IteratorResult<Frame>> {
    await this.loopPromise;
    await this.stopPromise;
    return this.handoff.endResult();
  }

  // ---------------------------------------------------------------- lifecycle

  /** idle → starting: the first next() starts the run loop. */
  private start(): void {
    if (this.lifecycle.state !== 'idle') return;
    this.lifecycle.transition('starting');
    this.loopPromise = this.runLoop();
  }

  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  /** → stopping → ended ('stopped'). Stopping a source that is halting, over or already stopping keeps its end. */
  private async doStop(): Promise<void> {
    if (canTransition(this.lifecycle.state, 'stopping')) this.lifecycle.transition('stopping');
    this.handoff.clear();
    this.loop.interrupt();
    await Promise.all([this.loop.kill(), this.probe.close()]);
    await this.loopPromise;
    if (this.lifecycle.state === 'stopping') this.finish('stopped');
    this.loop.close();
    this.handoff.settle();
  }

  /** maxFrames handed out: → halting, then ended ('maxFrames reached') once the loop exits. Frames already handed out stay. */
  private halt(): void {
    if (!canTransition(this.lifecycle.state, 'halting')) return;
    this.lifecycle.transition('halting');
    this.loop.interrupt();
    void this.loop.kill();
    this.handoff.clear();
  }

  private async runLoop(): Promise<void> {
    try {
      const bin = await resolveFfmpeg(this.o.binaries);
      if (this.lifecycle.windingDown) return;
      if (this.o.input.kind === 'file') await checkInputFile(this.o.input);
      if (this.lifecycle.windingDown) return;
      const reason = await this.loop.run((n) => new FfmpegAttempt(n, bin, this.attemptHost));
      if (reason !== undefined) this.finish(reason);
    } catch (err) {
      if (this.lifecycle.active) this.fail(err);
    } finally {
      if (this.lifecycle.state === 'halting') this.finish('maxFrames reached');
      this.loop.close();
      // Settle after the loop promise itself has resolved, so that endResult() sees it.
      queueMicrotask(() => this.handoff.settle());
    }
  }

  /** starting → connecting (announced), or retrying → connecting (the status stays 'reconnecting' until a frame comes). */
  private beginAttempt(): void {
    const first = this.lifecycle.state === 'starting';
    this.lifecycle.transition('connecting');
    if (first) this.announce('connecting');
  }

  /** connecting → live: the attempt's first frame, `startupMs` after ffmpeg was spawned. */
  private goLive(startupMs: number): void {
    this.loop.attemptDelivered();
    this.lifecycle.transition('live');
    this.announce('live', { startupMs });
  }

  /** connecting / live → retrying: the attempt failed and the retry policy tries again. */
  private retrying(err: IngestError, delayMs: number, retry: number): void {
    this.o.log.warn(
      { input: this.o.input.display, code: err.code, err: err.message, details: err.details, retryInMs: delayMs, retry },
      'input failed; reconnecting',
    );
    this.lifecycle.transition('retrying');
    this.announce('reconnecting', { reason: err.message, code: err.code, retryInMs: delayMs, retry });
  }

  /** → ended. */
  private finish(reason: string): void {
    this.lifecycle.transition('ended');
    this.announce('ended', { reason });
    this.o.log.info({ input: this.o.input.display, reason, droppedFrames: this.droppedFrames }, 'input ended');
  }

  /** → failed: the consumer gets the error (once). */
  private fail(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.handoff.fail(error);
    this.lifecycle.transition('failed');
    const code = (error as { code?: unknown }).code;
    this.announce('error', { reason: error.message, ...(typeof code === 'string' ? { code } : {}) });
    this.o.log.error(
      { input: this.o.input.display, code, err: error.message, details: (error as { details?: string[] }).details },
      'input failed',
    );
  }

  private announce(state: StreamState, extra: StatusExtra = {}): void {
    this._status = { state, ...extra, droppedFrames: this.droppedFrames, reconnects: this.reconnects };
    if (state === 'live' || state === 'connecting') {
      this.o.log.info({ input: this.o.input.display, state, ...(extra.startupMs !== undefined ? { startupMs: extra.startupMs } : {}) }, `input ${state}`);
    }
    try {
      this.emit('status', this.status);
    } catch (err) {
      // A listener's bug must not break the source's state machine.
      this.o.log.error({ input: this.o.input.display, err: (err as Error)?.message }, 'status listener threw');
    }
  }

  // ---------------------------------------------------------------- attempts

  private modeFor(kind: SourceKind): HandoffMode {
    if (kind === 'file' || kind === 'stdin') return this.o.realtime ? 'drop' : 'backpressure';
    return 'drop';
  }

  private makeAttemptHost(): AttemptHost {
    const source = this;
    return {
      options: this.o,
      clock: new StreamClock(this.o.fps),
      handoff: this.handoff,
      starts: ffmpegStarts,
      get kind() {
        return source._kind;
      },
      get discarding() {
        return source.lifecycle.windingDown;
      },
      becameFile: (durationSeconds) => {
        // VOD over http (an mp4, or an HLS playlist with ENDLIST): file semantics from now on.
        this._kind = 'file';
        this.handoff.mode = this.modeFor('file');
        this.o.log.info({ input: this.o.input.display, durationSeconds }, 'http input has a duration; reading it as a file');
      },
      touch: () => this.loop.touch(),
      firstFrame: (startupMs) => this.goLive(startupMs),
    };
  }
}

/** Before ffmpeg runs on a file: it exists, is readable and is not empty. */
async function checkInputFile(input: ClassifiedInput): Promise<void> {
  const path = input.path!;
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new FileNotFoundError(input.display, { cause: err });
    throw new FileUnreadableError(input.display, (err as Error).message, { cause: err });
  }
  if (st.isDirectory()) throw new FileUnreadableError(input.display, 'it is a directory');
  try {
    await access(path, fsConstants.R_OK);
  } catch (err) {
    throw new FileUnreadableError(input.display, 'permission denied', { cause: err });
  }
  if (st.isFile() && st.size === 0) throw new CorruptInputError(input.display, 'the file is empty');
}

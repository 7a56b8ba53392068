/**
 * The source's retry loop: ffmpeg attempts one after another; a failed attempt is retried after
 * the delay its retry policy gives (retry-policy.ts; a wait that stop() and halt() cut short),
 * or ends the source with its error. A watchdog kills an attempt that delivers no first frame
 * within the connect timeout, or no frame for the stall timeout once it has delivered one.
 *
 * The loop makes no state change itself: it tells its source (beforeAttempt, retrying), which
 * moves its lifecycle (source-state.ts) and announces the status.
 */
import type { IngestError } from './errors.js';
import type { AttemptOutcome, FfmpegAttempt } from './ffmpeg-attempt.js';
import { gaveUpReason, type RetryPolicy } from './retry-policy.js';
import type { SourceLifecycle } from './source-state.js';
import type { SourceKind } from './types.js';

export interface RetryLoopOptions {
  policy: RetryPolicy;
  /** Read only: the loop ends when the source winds down, the watchdog runs during attempts. */
  lifecycle: SourceLifecycle;
  /** No frame for this long, after the attempt's first one → the attempt is stalled. */
  stallMs: number;
  /** No first frame this long after ffmpeg started → the attempt failed (connect-timeout). */
  connectMs: number;
  /** The source's kind now. */
  kind: () => SourceKind;
  /** Before each attempt (the source moves to connecting). */
  beforeAttempt: (n: number) => void;
  /** A failed attempt will be retried after delayMs (the source moves to retrying and says why); `retry` counts the failures in a row. */
  retrying: (error: IngestError, delayMs: number, retry: number) => void;
}

export class RetryLoop {
  private readonly o: RetryLoopOptions;
  private readonly watchdog: StallWatchdog;
  private current: FfmpegAttempt | undefined;
  private consecutive = 0;
  /** The current run of failures began with the drop of an attempt that had delivered frames. */
  private wasUp = false;
  private everLive = false;
  private startedAt = 0;
  private retried = 0;
  private retryWait: { timer: NodeJS.Timeout; wake: () => void } | undefined;

  constructor(o: RetryLoopOptions) {
    this.o = o;
    this.watchdog = new StallWatchdog(
      () => (this.current && this.current.framesDelivered > 0 ? o.stallMs : o.connectMs),
      (idleMs) => {
        const att = this.current;
        if (att && att.watchable && o.lifecycle.attempting) att.stall(idleMs);
      },
      Math.max(50, Math.min(500, Math.min(o.stallMs, o.connectMs) / 4)),
    );
  }

  /** Retries so far (the `reconnects` of the source's status). */
  get reconnects(): number {
    return this.retried;
  }

  /**
   * Runs attempts until one ends the input (its reason is returned) or fails for good (its error
   * is thrown). Returns undefined when the source winds down (stop, halt).
   */
  async run(startAttempt: (n: number) => FfmpegAttempt): Promise<string | undefined> {
    this.startedAt = Date.now();
    this.watchdog.start();
    for (let n = 1; ; n++) {
      this.o.beforeAttempt(n);
      const attempt = startAttempt(n);
      this.current = attempt;
      const outcome: AttemptOutcome = await attempt.run();
      if (this.o.lifecycle.windingDown) return undefined;
      if (outcome.type === 'end') return outcome.reason;
      await this.retryAfter(outcome.error, attempt.framesDelivered);
      if (this.o.lifecycle.windingDown) return undefined;
    }
  }

  /** The current attempt delivered its first frame: the failures in a row start again from 0. */
  attemptDelivered(): void {
    this.consecutive = 0;
    this.everLive = true;
  }

  /** Stream activity: the stall timeout counts from now. */
  touch(): void {
    this.watchdog.touch();
  }

  /** Stop / halt: cuts a retry wait short, and the running attempt's output is thrown away. */
  interrupt(): void {
    const wait = this.retryWait;
    this.retryWait = undefined;
    if (wait) {
      clearTimeout(wait.timer);
      wait.wake();
    }
    this.current?.abandon();
  }

  /** SIGKILLs the running attempt's ffmpeg; resolves once it has been reaped. */
  kill(): Promise<void> {
    return this.current?.kill() ?? Promise.resolve();
  }

  /** The loop is over: no watchdog, no attempt. */
  close(): void {
    this.watchdog.stop();
    this.current = undefined;
  }

  private async retryAfter(error: IngestError, frames: number): Promise<void> {
    if (this.consecutive === 0) this.wasUp = frames > 0;
    this.consecutive++;
    const decision = this.o.policy.decide({
      code: error.code,
      kind: this.o.kind(),
      consecutive: this.consecutive,
      wasUp: this.wasUp,
      elapsedMs: Date.now() - this.startedAt,
      everLive: this.everLive,
    });
    if (!decision.retry) throw decision.gaveUp ? error.markGaveUp(decision.gaveUp, `${gaveUpReason(error.message, decision.gaveUp)}.`) : error;
    const delayMs = decision.delayMs;
    this.retried++;
    this.o.retrying(error, delayMs, this.consecutive);
    await new Promise<void>((resolve) => {
      this.retryWait = { timer: setTimeout(resolve, delayMs), wake: resolve };
    });
    this.retryWait = undefined;
  }
}

/** Calls `onStall(idleMs)` when nothing happened for `limitMs()` (checked a few times per timeout). */
class StallWatchdog {
  private readonly limitMs: () => number;
  private readonly onStall: (idleMs: number) => void;
  private readonly everyMs: number;
  private lastActivity = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(limitMs: () => number, onStall: (idleMs: number) => void, everyMs: number) {
    this.limitMs = limitMs;
    this.onStall = onStall;
    this.everyMs = everyMs;
  }

  touch(): void {
    this.lastActivity = Date.now();
  }

  start(): void {
    this.timer = setInterval(() => this.check(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private check(): void {
    const idle = Date.now() - this.lastActivity;
    if (idle > this.limitMs()) this.onStall(idle);
  }
}

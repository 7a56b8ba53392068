/**
 * The source's retry loop: ffmpeg attempts one after another; a failed attempt is retried after
 * the delay its retry policy gives (a wait that stop() and halt() cut short), or ends the source
 * with its error. A watchdog kills an attempt that delivers nothing for the stall timeout.
 *
 * The loop makes no state change itself: it tells its source (beforeAttempt, retrying), which
 * moves its lifecycle (source-state.ts) and announces the status.
 */
import { backoffDelay } from './backoff.js';
import type { IngestError } from './errors.js';
import type { AttemptOutcome, FfmpegAttempt } from './ffmpeg-attempt.js';
import type { ReconnectSettings } from './source-options.js';
import type { SourceLifecycle } from './source-state.js';
import { isLiveKind, type IngestLogger, type SourceKind } from './types.js';

/** A failed attempt, as a retry policy sees it. */
export interface AttemptFailure {
  error: IngestError;
  /** The source's kind when the attempt failed. */
  kind: SourceKind;
  /** Failed attempts in a row, this one included (an attempt that delivered a frame resets it). */
  consecutive: number;
  /** Frames the failed attempt delivered (more than 0: a live input that dropped). */
  frames: number;
}

/** Whether, and when, a failed attempt is followed by another. */
export interface RetryPolicy {
  /** Milliseconds to wait before the next attempt, or undefined: give up with the failure's error. */
  retryDelay(failure: AttemptFailure): number | undefined;
}

/**
 * The ingest's reconnect policy: live inputs and devices retry any failure but
 * protocol-unavailable, with backoffDelay(), up to maxRetries failures in a row; files and
 * stdin never retry.
 */
export function reconnectPolicy(settings: ReconnectSettings, random: () => number = Math.random): RetryPolicy {
  return {
    retryDelay(f) {
      if (!isLiveKind(f.kind) || f.error.code === 'protocol-unavailable') return undefined;
      if (f.consecutive > settings.maxRetries) return undefined;
      return backoffDelay(f.consecutive, settings.initialDelayMs, settings.maxDelayMs, random);
    },
  };
}

export interface RetryLoopOptions {
  policy: RetryPolicy;
  /** Read only: the loop ends when the source winds down, the watchdog runs during attempts. */
  lifecycle: SourceLifecycle;
  /** No frame for this long → the attempt is stalled. */
  stallMs: number;
  /** The source's kind now. */
  kind: () => SourceKind;
  /** Before each attempt (the source moves to connecting). */
  beforeAttempt: (n: number) => void;
  /** A failed attempt will be retried after delayMs (the source moves to retrying and says why). */
  retrying: (error: IngestError, delayMs: number, consecutive: number) => void;
}

export class RetryLoop {
  private readonly o: RetryLoopOptions;
  private readonly watchdog: StallWatchdog;
  private current: FfmpegAttempt | undefined;
  private consecutive = 0;
  private retried = 0;
  private retryWait: { timer: NodeJS.Timeout; wake: () => void } | undefined;

  constructor(o: RetryLoopOptions) {
    this.o = o;
    this.watchdog = new StallWatchdog(o.stallMs, (idleMs) => {
      const att = this.current;
      if (att && att.watchable && o.lifecycle.attempting) att.stall(idleMs);
    });
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

  /** The current attempt delivered a frame: the failures in a row start again from 0. */
  attemptDelivered(): void {
    this.consecutive = 0;
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
    this.consecutive++;
    const delayMs = this.o.policy.retryDelay({ error, kind: this.o.kind(), consecutive: this.consecutive, frames });
    if (delayMs === undefined) throw error;
    this.retried++;
    this.o.retrying(error, delayMs, this.consecutive);
    await new Promise<void>((resolve) => {
      this.retryWait = { timer: setTimeout(resolve, delayMs), wake: resolve };
    });
    this.retryWait = undefined;
  }
}

/** Calls `onStall(idleMs)` when nothing happened for `stallMs` (checked a few times per timeout). */
class StallWatchdog {
  private readonly stallMs: number;
  private readonly onStall: (idleMs: number) => void;
  private lastActivity = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(stallMs: number, onStall: (idleMs: number) => void) {
    this.stallMs = stallMs;
    this.onStall = onStall;
  }

  touch(): void {
    this.lastActivity = Date.now();
  }

  start(): void {
    const every = Math.max(50, Math.min(500, this.stallMs / 4));
    this.timer = setInterval(() => this.check(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private check(): void {
    const idle = Date.now() - this.lastActivity;
    if (idle > this.stallMs) this.onStall(idle);
  }
}

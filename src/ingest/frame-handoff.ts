/**
 * The hand-off from ffmpeg's frames to the consumer's next() calls. At most one finished frame
 * waits (the slot): in backpressure mode (files, stdin) the producer, and with it ffmpeg, waits
 * until the consumer has taken it; in drop mode (live, device, realtime) the newest frame
 * replaces it and the drop is counted. Counts the frames handed out against maxFrames, and keeps
 * the source's fatal error until the consumer has been given it (once).
 */
import { UsageError } from '../errors.js';
import type { Frame } from './types.js';

export type HandoffMode = 'backpressure' | 'drop';

export interface HandoffHooks {
  /** A frame left the slot in backpressure mode: the consumer's pace counts as stream activity. */
  taken(): void;
  /** maxFrames frames have been handed out. */
  limitReached(): void;
}

interface Waiter {
  resolve: (r: IteratorResult<Frame>) => void;
  reject: (e: unknown) => void;
}

const DONE: IteratorResult<Frame> = { done: true, value: undefined };

export class FrameHandoff {
  mode: HandoffMode;
  private readonly maxFrames: number | undefined;
  private readonly hooks: HandoffHooks;
  private slot: Frame | undefined;
  /** Wakes the producer held back by a full slot (backpressure). */
  private slotFreed: (() => void) | undefined;
  /** The consumer's next() waiting for a frame. */
  private waiter: Waiter | undefined;
  private handedOut = 0;
  private dropped = 0;
  /** The source's fatal error, until the consumer has been given it. */
  private fatal: Error | undefined;

  constructor(mode: HandoffMode, maxFrames: number | undefined, hooks: HandoffHooks) {
    this.mode = mode;
    this.maxFrames = maxFrames;
    this.hooks = hooks;
  }

  get droppedFrames(): number {
    return this.dropped;
  }

  /** Frames still to hand out before maxFrames (undefined: no limit). */
  get remainingFrames(): number | undefined {
    return this.maxFrames === undefined ? undefined : this.maxFrames - this.handedOut;
  }

  /** The producer is held back by the consumer (time that does not count as a stall). */
  get holdingProducer(): boolean {
    return this.slotFreed !== undefined;
  }

  // ---------------------------------------------------------------- consumer side

  /** The frame in the slot, if any; frees the slot for the producer. */
  take(): Frame | undefined {
    const frame = this.slot;
    if (!frame) return undefined;
    this.slot = undefined;
    if (this.mode === 'backpressure') this.hooks.taken();
    this.releaseProducer();
    this.count();
    return frame;
  }

  /** Waits for the next frame (or the end, through settle()). One next() at a time. */
  wait(): Promise<IteratorResult<Frame>> {
    if (this.waiter) throw new UsageError('frames(): next() called again before the previous call settled.');
    return new Promise<IteratorResult<Frame>>((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The result of a next() after the source is over: the fatal error once, then done. */
  endResult(): IteratorResult<Frame> {
    const error = this.takeError();
    if (error) throw error;
    return DONE;
  }

  /** Answers a waiting next() once the source is over: a frame still in the slot, else endResult(). */
  settle(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    const frame = this.take();
    if (frame) {
      w.resolve({ done: false, value: frame });
      return;
    }
    const error = this.takeError();
    if (error) w.reject(error);
    else w.resolve(DONE);
  }

  /** Keeps the source's fatal error for the consumer. */
  fail(error: Error): void {
    this.fatal = error;
  }

  // ---------------------------------------------------------------- producer side

  /**
   * Hands a new frame over: straight to a waiting next(), else into the slot. In backpressure
   * mode it first waits while the slot is full; `cancelled()` is asked after each wait.
   */
  async offer(frame: Frame, cancelled: () => boolean): Promise<void> {
    while (this.slot && this.mode === 'backpressure' && !this.waiter) {
      await new Promise<void>((resolve) => {
        this.slotFreed = resolve;
      });
      if (cancelled()) return;
    }
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      this.count();
      w.resolve({ done: false, value: frame });
      return;
    }
    if (this.slot) this.dropped++; // drop mode: the newest frame wins
    this.slot = frame;
  }

  /** Stop / halt: forgets the frame in the slot and lets a held-back producer go. */
  clear(): void {
    this.slot = undefined;
    this.releaseProducer();
  }

  private releaseProducer(): void {
    const release = this.slotFreed;
    this.slotFreed = undefined;
    release?.();
  }

  private count(): void {
    this.handedOut++;
    if (this.maxFrames !== undefined && this.handedOut >= this.maxFrames) this.hooks.limitReached();
  }

  private takeError(): Error | undefined {
    const error = this.fatal;
    this.fatal = undefined;
    return error;
  }
}

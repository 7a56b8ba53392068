/**
 * A sink's own delivery: a bounded queue and one worker that hands items over in batches,
 * retrying a failed batch (the same batch, so a receiver never sees an item twice under two
 * names) with the project's backoff (src/ingest/backoff.ts). A full queue drops its oldest
 * item and counts it; nothing here ever blocks or throws into the caller, so a failing sink
 * never slows the stream or the other sinks.
 *
 * Lifecycle (one declared state, moves in DELIVERY_TRANSITIONS only):
 *
 *   idle ──push──▶ sending ──batch delivered, queue empty──▶ idle
 *   sending ──batch delivered, more queued──▶ sending
 *   sending ──failed, retryable──▶ waiting ──backoff over──▶ sending
 *   idle, sending, waiting ──close()──▶ draining ──queue empty / deadline──▶ closed
 *   idle ──close()──▶ closed
 */
import { backoffDelay } from '../ingest/backoff.js';
import type { Logger } from '../logger.js';

export type DeliveryState = 'idle' | 'sending' | 'waiting' | 'draining' | 'closed';

export const DELIVERY_TRANSITIONS: Record<DeliveryState, readonly DeliveryState[]> = {
  idle: ['sending', 'draining', 'closed'],
  sending: ['idle', 'sending', 'waiting', 'draining'],
  waiting: ['sending', 'draining'],
  draining: ['closed'],
  closed: [],
};

/** A batch: its items and its number (1, 2, … in the order batches are first tried). */
export interface Batch<T> {
  readonly number: number;
  readonly items: readonly T[];
  /** 1 on the first try, then 2, 3, … on retries of the same batch. */
  attempt: number;
}

/** Thrown by `deliver` for a batch that must not be retried (a 4xx answer): it is dropped. */
export class PermanentDeliveryError extends Error {}

export interface DeliveryOptions<T> {
  /** Items held at most; past it the oldest is dropped. */
  capacity: number;
  /** Items per batch at most. */
  maxBatch: number;
  /** Hands one batch over; throws to retry it later (PermanentDeliveryError: drop it). */
  deliver: (batch: Batch<T>) => Promise<void>;
  backoff: { initialDelayMs: number; maxDelayMs: number };
  /** Least time between two batches (a receiver's rate limit); default 0. */
  minIntervalMs?: number;
  logger: Logger;
}

export class DeliveryQueue<T> {
  private state: DeliveryState = 'idle';
  private readonly queue: T[] = [];
  private batch: Batch<T> | undefined;
  private batches = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastSentAt = 0;
  private drained: (() => void) | undefined;
  private _dropped = 0;
  private _delivered = 0;
  private _failures = 0;

  constructor(private readonly options: DeliveryOptions<T>) {}

  get current(): DeliveryState {
    return this.state;
  }

  /** Items dropped: the queue was full, or their batch failed for good. */
  get dropped(): number {
    return this._dropped;
  }

  get delivered(): number {
    return this._delivered;
  }

  /** Failed tries (each retry counts). */
  get failures(): number {
    return this._failures;
  }

  get pending(): number {
    return this.queue.length + (this.batch?.items.length ?? 0);
  }

  push(item: T): void {
    if (this.state === 'draining' || this.state === 'closed') return;
    this.queue.push(item);
    if (this.queue.length > this.options.capacity) {
      this.queue.shift();
      this._dropped++;
    }
    if (this.state === 'idle') this.schedule(0);
  }

  /** A batch waiting for its retry is tried now (the receiver is back). */
  retryNow(): void {
    if (this.state !== 'waiting') return;
    clearTimeout(this.timer);
    this.schedule(0);
  }

  /** Delivers what is queued for at most `timeoutMs`, then stops; what is left is dropped. */
  async close(timeoutMs: number): Promise<void> {
    if (this.state === 'closed' || this.state === 'draining') return;
    if (this.state === 'idle' && this.pending === 0) {
      this.move('closed');
      return;
    }
    const wasWaiting = this.state === 'waiting';
    this.move('draining');
    const done = new Promise<void>((resolve) => (this.drained = resolve));
    if (wasWaiting) {
      clearTimeout(this.timer);
      void this.run();
    }
    const deadline = setTimeout(() => this.finish(), timeoutMs);
    await done;
    clearTimeout(deadline);
  }

  private move(next: DeliveryState): void {
    if (!DELIVERY_TRANSITIONS[this.state].includes(next)) throw new Error(`delivery: illegal move ${this.state} → ${next}`);
    this.state = next;
  }

  private schedule(delayMs: number): void {
    this.move('sending');
    const wait = Math.max(delayMs, this.lastSentAt + (this.options.minIntervalMs ?? 0) - Date.now());
    if (wait <= 0) void this.run();
    else this.timer = setTimeout(() => void this.run(), wait);
  }

  /** Sends the batch in hand (or the next one); decides what comes after. */
  private async run(): Promise<void> {
    this.batch ??= this.take();
    const batch = this.batch;
    if (!batch) return this.afterEmpty();
    this.lastSentAt = Date.now();
    try {
      await this.options.deliver(batch);
      this._delivered += batch.items.length;
      this.batch = undefined;
    } catch (err) {
      this._failures++;
      if (err instanceof PermanentDeliveryError) {
        this.options.logger.warn({ err: err.message, items: batch.items.length }, 'output: batch refused; dropped');
        this._dropped += batch.items.length;
        this.batch = undefined;
      } else return this.retryLater(batch, err);
    }
    if (this.state === 'closed') return;
    if (this.pending > 0) return this.state === 'draining' ? this.run() : this.schedule(0);
    this.afterEmpty();
  }

  private retryLater(batch: Batch<T>, err: unknown): void {
    if (this.state === 'closed') return;
    const delay = backoffDelay(batch.attempt, this.options.backoff.initialDelayMs, this.options.backoff.maxDelayMs);
    batch.attempt++;
    this.options.logger.warn({ err: err instanceof Error ? err.message : String(err), retryInMs: delay, attempt: batch.attempt }, 'output: delivery failed; retrying');
    if (this.state === 'draining') {
      this.timer = setTimeout(() => void this.run(), delay);
      return;
    }
    this.move('waiting');
    this.timer = setTimeout(() => {
      if (this.state === 'waiting') this.schedule(0);
    }, delay);
  }

  private afterEmpty(): void {
    if (this.state === 'draining') this.finish();
    else if (this.state === 'sending') this.move('idle');
  }

  private take(): Batch<T> | undefined {
    if (this.queue.length === 0) return undefined;
    const items = this.queue.splice(0, this.options.maxBatch);
    return { number: ++this.batches, items, attempt: 1 };
  }

  private finish(): void {
    if (this.state === 'closed') return;
    clearTimeout(this.timer);
    this._dropped += this.pending;
    this.queue.length = 0;
    this.batch = undefined;
    this.move('closed');
    this.drained?.();
  }
}

/**
 * A single-consumer async queue: the producer pushes, the consumer iterates with for-await.
 * `end(error?)` finishes it; items already queued are delivered first, then the error is
 * thrown (or the iteration ends). Leaving the loop early calls `onReturn`.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private waiterReject: ((e: unknown) => void) | undefined;
  private ended = false;
  private error: unknown;
  private hasError = false;
  private drainWaiters: Array<() => void> = [];
  private iterated = false;

  constructor(private readonly onReturn?: () => Promise<void> | void) {}

  get length(): number {
    return this.items.length;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  push(item: T): void {
    if (this.ended) return;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      this.waiterReject = undefined;
      w({ done: false, value: item });
      return;
    }
    this.items.push(item);
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    if (error !== undefined) {
      this.error = error;
      this.hasError = true;
    }
    this.settleWaiter();
    this.releaseDrain();
  }

  /**
   * Resolves when at most `max` items are waiting (producer back-pressure), the queue has
   * ended, or `cancelled()` turns true after a `wakeProducers()`.
   */
  async waitBelow(max: number, cancelled: () => boolean = () => false): Promise<void> {
    while (this.items.length > max && !this.ended && !cancelled()) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
  }

  /** Wakes producers blocked in waitBelow (they re-check their condition). */
  wakeProducers(): void {
    this.releaseDrain();
  }

  private releaseDrain(): void {
    const ws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of ws) w();
  }

  private settleWaiter(): void {
    const w = this.waiter;
    const rej = this.waiterReject;
    if (!w || !rej) return;
    this.waiter = undefined;
    this.waiterReject = undefined;
    if (this.hasError) {
      this.hasError = false;
      rej(this.error);
    } else {
      w({ done: true, value: undefined });
    }
  }

  private next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) {
      const value = this.items.shift() as T;
      if (this.drainWaiters.length) this.releaseDrain();
      return Promise.resolve({ done: false, value });
    }
    if (this.ended) {
      if (this.hasError) {
        this.hasError = false;
        return Promise.reject(this.error);
      }
      return Promise.resolve({ done: true, value: undefined });
    }
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.waiterReject = reject;
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new Error('this event stream can be iterated only once');
    this.iterated = true;
    return {
      next: () => this.next(),
      return: async () => {
        await this.onReturn?.();
        return { done: true, value: undefined };
      },
    };
  }
}

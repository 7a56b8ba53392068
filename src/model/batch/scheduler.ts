/**
 * The gather rule of the batched engine (docs/architecture.md §Batching): when to run the
 * steps the streams of one worker have submitted.
 *
 * A stream is *inside a frame* from its frame's first step until the main thread says the
 * frame ended. Steps run at once when every stream inside a frame has one waiting (so a lone
 * stream is never delayed, and streams in step with each other share every run), or when
 * `maxSize` are waiting; otherwise the first waiting step waits at most `gatherMs` for the
 * others. Streams join and leave between runs.
 */
import type { StepOp } from './protocol.js';

export type Decision = { run: StepOp[] } | { waitMs: number } | undefined;

export class GatherRule {
  private queue: StepOp[] = [];
  private readonly queued = new Set<number>();
  private readonly inFrame = new Set<number>();
  private firstAt = 0;

  constructor(
    private readonly maxSize: number,
    private readonly gatherMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Steps waiting. */
  get waiting(): number {
    return this.queue.length;
  }

  submit(step: StepOp): void {
    if (this.queue.length === 0) this.firstAt = this.now();
    if (step.pixels) this.inFrame.add(step.sid);
    this.queue.push(step);
    this.queued.add(step.sid);
  }

  /** The stream's frame ended. */
  end(sid: number): void {
    this.inFrame.delete(sid);
  }

  /** The stream is gone: its waiting step (if any) is dropped and returned. */
  drop(sid: number): StepOp[] {
    this.inFrame.delete(sid);
    if (!this.queued.delete(sid)) return [];
    const dropped = this.queue.filter((s) => s.sid === sid);
    this.queue = this.queue.filter((s) => s.sid !== sid);
    return dropped;
  }

  /** What to do now: run these steps, wait this long, or nothing (no step waiting). */
  decide(): Decision {
    if (this.queue.length === 0) return undefined;
    let missing = false;
    for (const sid of this.inFrame) {
      if (!this.queued.has(sid)) {
        missing = true;
        break;
      }
    }
    const left = this.gatherMs - (this.now() - this.firstAt);
    if (missing && this.queue.length < this.maxSize && left > 0) return { waitMs: left };
    const run = this.queue;
    this.queue = [];
    this.queued.clear();
    return { run };
  }
}

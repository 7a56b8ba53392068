/**
 * The gather rule of the batched engine (docs/architecture.md §Batching): when to run the
 * steps the streams of one worker have submitted.
 *
 * A stream is *inside a frame* from its frame's first step until the main thread says the
 * frame ended. Steps run at once when every stream inside a frame has one waiting (so a lone
 * stream is never delayed, and streams in step with each other share every run), or when
 * `maxSize` are waiting; otherwise the first waiting step waits at most `gatherMs` for the
 * others. Streams join and leave between runs.
 *
 * Frames: a frame's first step waits at most `frameGatherMs` for other streams' frames, so
 * that streams whose frames arrive at different moments (real-time cameras, each at its own
 * phase) go through the frame together and share its runs instead of each running alone.
 * It waits only while the worker serves at least FRAME_GATHER_MIN_STREAMS streams and some
 * of them are neither inside a frame nor waiting to start one (a stream alone, or streams
 * that all have their frames in, never wait), and never beyond `maxSize` frames. Steps of
 * streams already inside a frame are not held by it.
 */
import type { StepOp } from './protocol.js';

export type Decision = { run: StepOp[] } | { waitMs: number } | undefined;

/**
 * Fewer streams than this in a worker: frames start at once. With fewer, one stream per run
 * costs the worker little (16 streams at 2 fps ≈ 13 % of a core on the development machine),
 * and the wait would only add latency.
 */
export const FRAME_GATHER_MIN_STREAMS = 16;

export class GatherRule {
  private queue: StepOp[] = [];
  private readonly queued = new Set<number>();
  private readonly inFrame = new Set<number>();
  /** Streams whose frame a chained closing step ended: back inside it if the main thread's own step comes instead. */
  private readonly closedByChain = new Set<number>();
  private firstAt = 0;
  /** Frame-starting steps held for other frames, oldest first. */
  private held: Array<{ step: StepOp; at: number }> = [];

  constructor(
    private readonly maxSize: number,
    private readonly gatherMs: number,
    private readonly frameGatherMs = 0,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Steps waiting. */
  get waiting(): number {
    return this.queue.length + this.held.length;
  }

  submit(step: StepOp): void {
    if (step.pixels) this.held.push({ step, at: this.now() });
    else this.enqueue(step);
  }

  private enqueue(step: StepOp): void {
    if (this.queue.length === 0) this.firstAt = this.now();
    if (step.pixels) this.inFrame.add(step.sid);
    else if (!step.chained && this.closedByChain.delete(step.sid)) this.inFrame.add(step.sid); // the chained closing was not taken
    this.queue.push(step);
    this.queued.add(step.sid);
  }

  /** The stream's frame ended. */
  end(sid: number): void {
    this.inFrame.delete(sid);
    this.closedByChain.delete(sid);
  }

  /** The stream is gone: its waiting step (if any) is dropped and returned. */
  drop(sid: number): StepOp[] {
    this.inFrame.delete(sid);
    this.closedByChain.delete(sid);
    const heldSteps = this.held.filter((h) => h.step.sid === sid).map((h) => h.step);
    this.held = this.held.filter((h) => h.step.sid !== sid);
    if (!this.queued.delete(sid)) return heldSteps;
    const dropped = this.queue.filter((s) => s.sid === sid);
    this.queue = this.queue.filter((s) => s.sid !== sid);
    return [...heldSteps, ...dropped];
  }

  /** A step of the main thread's for `sid` is in: its waiting chained steps are not wanted any more. */
  withdrawChained(sid: number): void {
    if (!this.queued.has(sid)) return;
    this.queue = this.queue.filter((s) => s.sid !== sid || !s.chained);
    if (!this.queue.some((s) => s.sid === sid)) this.queued.delete(sid);
  }

  /**
   * What to do now: run these steps, wait this long, or nothing (no step waiting).
   * `streams`: the streams the worker serves (open sessions).
   */
  decide(streams = 0): Decision {
    const frameWait = this.releaseFrames(streams);
    if (this.queue.length === 0) return frameWait > 0 ? { waitMs: frameWait } : undefined;
    let missing = false;
    for (const sid of this.inFrame) {
      if (!this.queued.has(sid)) {
        missing = true;
        break;
      }
    }
    const left = this.gatherMs - (this.now() - this.firstAt);
    if (missing && this.queue.length < this.maxSize && left > 0) return { waitMs: frameWait > 0 ? Math.min(left, frameWait) : left };
    const run = this.queue;
    this.queue = [];
    this.queued.clear();
    for (const s of run) {
      if (!s.closes) continue;
      this.inFrame.delete(s.sid);
      this.closedByChain.add(s.sid);
    }
    return { run };
  }

  /** Moves the held frames to the queue when their wait is over; else how long they still wait (0: none held). */
  private releaseFrames(streams: number): number {
    const first = this.held[0];
    if (!first) return 0;
    const left = this.frameGatherMs - (this.now() - first.at);
    const others = streams - this.inFrame.size - this.held.length;
    if (left > 0 && streams >= FRAME_GATHER_MIN_STREAMS && others > 0 && this.held.length < this.maxSize) return left;
    for (const h of this.held) this.enqueue(h.step);
    this.held = [];
    return 0;
  }
}

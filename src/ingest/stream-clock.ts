/**
 * Frame numbering and timestamps over the life of a source. Each ffmpeg attempt reports its own
 * pts (from showinfo); the clock turns them into the stream's: strictly increasing, and after a
 * reconnect continuing from the last frame plus the wall-clock time the stream was away (until
 * the new attempt started).
 */

/**
 * Stamps one attempt's frames: (pts from ffmpeg in s or NaN, Date.now()) → index and stream pts.
 * `base` is where the attempt's time 0 falls on the stream's clock (its HLS output is offset by it).
 */
export type AttemptStamper = ((t: number, now: number) => { index: number; ptsSeconds: number }) & { readonly base: number };

export class StreamClock {
  private readonly fps: number;
  private lastPts: number | undefined;
  private lastFrameAt = 0;
  private nextIndex = 0;

  constructor(fps: number) {
    this.fps = fps;
  }

  /** Frames stamped so far, over all attempts. */
  get frames(): number {
    return this.nextIndex;
  }

  /** A stamper for a new ffmpeg attempt, starting at `startedAt` (ms). */
  forAttempt(startedAt = Date.now()): AttemptStamper {
    const step = 1 / this.fps;
    // First attempt: the stream's own clock. After a reconnect the new ffmpeg starts again near
    // 0, so continue from the last frame plus the time the stream was away until this attempt
    // started. Fixed before ffmpeg starts, so that its HLS output can be offset by it.
    const start = this.lastPts === undefined ? 0 : Math.round((this.lastPts + Math.max(step, (startedAt - this.lastFrameAt) / 1000)) * 1e6) / 1e6;
    let base = start;
    let lastT: number | undefined;
    const stamp = (raw: number, now: number): { index: number; ptsSeconds: number } => {
      // Frames without a pts are numbered by counting.
      const t = Number.isFinite(raw) ? raw : lastT === undefined ? 0 : lastT + step;
      lastT = t;
      let pts = base + t;
      if (this.lastPts !== undefined && pts <= this.lastPts) {
        const fixed = this.lastPts + step;
        base += fixed - pts;
        pts = fixed;
      }
      pts = Math.round(pts * 1e6) / 1e6;
      this.lastPts = pts;
      this.lastFrameAt = now;
      return { index: this.nextIndex++, ptsSeconds: pts };
    };
    return Object.assign(stamp, { base: start });
  }
}

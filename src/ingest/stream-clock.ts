/**
 * Frame numbering and timestamps over the life of a source. Each ffmpeg attempt reports its own
 * pts (from showinfo); the clock turns them into the stream's: strictly increasing, and after a
 * reconnect continuing from the last frame plus the wall-clock time the stream was away.
 */

/** Stamps one attempt's frames: (pts from ffmpeg in s or NaN, Date.now()) → index and stream pts. */
export type AttemptStamper = (t: number, now: number) => { index: number; ptsSeconds: number };

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

  /** A stamper for a new ffmpeg attempt. */
  forAttempt(): AttemptStamper {
    const step = 1 / this.fps;
    let base: number | undefined;
    let lastT: number | undefined;
    return (raw, now) => {
      // Frames without a pts are numbered by counting.
      const t = Number.isFinite(raw) ? raw : lastT === undefined ? 0 : lastT + step;
      lastT = t;
      // First attempt: the stream's own clock. After a reconnect the new ffmpeg starts again
      // near 0, so continue from the last frame plus the time the stream was away.
      base ??= this.lastPts === undefined ? 0 : this.lastPts + Math.max(step, (now - this.lastFrameAt) / 1000) - t;
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
  }
}

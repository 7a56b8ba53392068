/**
 * The frame source's lifecycle: one declared state and its legal moves (docs/ingest.md has the
 * diagram and what triggers each move).
 *
 *   idle ──first next()──▶ starting ──binaries found, file checked──▶ connecting
 *   connecting ──first frame of the attempt──▶ live
 *   connecting, live ──attempt failed, policy retries──▶ retrying ──delay over──▶ connecting
 *   connecting, live ──end of input──▶ ended          ──fatal failure──▶ failed
 *   starting ──fatal failure──▶ failed
 *   connecting, live, retrying ──maxFrames handed out──▶ halting ──loop exited──▶ ended
 *   idle, starting, connecting, live, retrying ──stop()──▶ stopping ──children reaped──▶ ended
 */

export const SOURCE_STATES = ['idle', 'starting', 'connecting', 'live', 'retrying', 'stopping', 'halting', 'ended', 'failed'] as const;
export type SourceState = (typeof SOURCE_STATES)[number];

/** Every legal move, and only those. */
export const SOURCE_TRANSITIONS: Readonly<Record<SourceState, readonly SourceState[]>> = {
  idle: ['starting', 'stopping'],
  starting: ['connecting', 'failed', 'stopping'],
  connecting: ['live', 'retrying', 'ended', 'failed', 'halting', 'stopping'],
  live: ['retrying', 'ended', 'failed', 'halting', 'stopping'],
  retrying: ['connecting', 'halting', 'stopping'],
  halting: ['ended'],
  stopping: ['ended'],
  ended: [],
  failed: [],
};

export function canTransition(from: SourceState, to: SourceState): boolean {
  return SOURCE_TRANSITIONS[from].includes(to);
}

/** Thrown on an illegal move: a bug in the source, never an input problem. */
export class IllegalTransitionError extends Error {
  constructor(
    readonly from: SourceState,
    readonly to: SourceState,
  ) {
    super(`frame source: illegal state change ${from} → ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

export class SourceLifecycle {
  private current: SourceState = 'idle';

  get state(): SourceState {
    return this.current;
  }

  /** Moves to `to`; throws IllegalTransitionError when SOURCE_TRANSITIONS does not allow it. */
  transition(to: SourceState): void {
    if (!canTransition(this.current, to)) throw new IllegalTransitionError(this.current, to);
    this.current = to;
  }

  /** Starting, connecting, live or retrying: still working towards frames. */
  get active(): boolean {
    return this.current === 'starting' || this.current === 'connecting' || this.current === 'live' || this.current === 'retrying';
  }

  /** An ffmpeg attempt is under way (the watchdog watches it). */
  get attempting(): boolean {
    return this.current === 'connecting' || this.current === 'live';
  }

  /** Stopping or halting: frames are discarded and ffmpeg is being killed. */
  get windingDown(): boolean {
    return this.current === 'stopping' || this.current === 'halting';
  }

  /** Ended or failed: nothing more happens. */
  get over(): boolean {
    return this.current === 'ended' || this.current === 'failed';
  }
}

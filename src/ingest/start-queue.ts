/**
 * A process-wide bound on the ffmpeg children that are starting: spawned, no first frame yet.
 * Starting ffmpeg (loading its libraries, probing the input, opening the decoder) costs a
 * fraction of a CPU-second; sixty streams started at once on two cores take many seconds
 * each, all together. Started a few at a time, each one starts quickly, and the others wait
 * in this queue, where no timeout counts (see docs/ingest.md, "Start-up").
 */
import os from 'node:os';

/** A place in the queue: `granted` resolves true once the slot is held, false if released first. */
export interface StartTicket {
  readonly granted: Promise<boolean>;
  /** Frees the slot (first frame, or the attempt is over), or leaves the queue. Idempotent. */
  release(): void;
}

export class StartQueue {
  private slots: number;
  private held = 0;
  private readonly waiting: Array<(ok: boolean) => void> = [];

  constructor(slots: number) {
    this.slots = Math.max(1, Math.floor(slots));
  }

  /** ffmpeg children starting now. */
  get starting(): number {
    return this.held;
  }

  /** Attempts waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  get limit(): number {
    return this.slots;
  }

  /** Changes the number of slots (tests, tuning); waiting attempts get the new ones at once. */
  setLimit(slots: number): void {
    this.slots = Math.max(1, Math.floor(slots));
    this.grant();
  }

  /** Joins the queue. */
  request(): StartTicket {
    let state: 'waiting' | 'held' | 'done' = 'waiting';
    let settle!: (ok: boolean) => void;
    const granted = new Promise<boolean>((resolve) => (settle = resolve));
    const onGrant = (ok: boolean): void => {
      if (state !== 'waiting') return;
      state = ok ? 'held' : 'done';
      settle(ok);
    };
    this.waiting.push(onGrant);
    this.grant();
    return {
      granted,
      release: () => {
        if (state === 'held') {
          state = 'done';
          this.held--;
          this.grant();
        } else if (state === 'waiting') {
          const i = this.waiting.indexOf(onGrant);
          if (i >= 0) this.waiting.splice(i, 1);
          onGrant(false);
        }
      },
    };
  }

  private grant(): void {
    while (this.held < this.slots && this.waiting.length > 0) {
      this.held++;
      this.waiting.shift()!(true);
    }
  }
}

/**
 * Starts at once by default: one per CPU, at least two. Starting is CPU-bound, so more slots
 * do not start the lot sooner, they only make each start slower (64 file streams on a loaded
 * 2-core machine: 46 s for all with 2 or 4 slots; ffmpeg start → first frame p50 1.3 s with 2,
 * 2.2 s with 4; with 64 slots, streams hit the 20 s connect timeout).
 */
export function defaultStartSlots(cpus = os.availableParallelism()): number {
  return Math.max(2, cpus);
}

/** The queue every frame source of this process uses. */
export const ffmpegStarts = new StartQueue(defaultStartSlots());

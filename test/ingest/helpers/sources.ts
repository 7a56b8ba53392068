/** Opening and reading frame sources in tests. */
import { openFrameSource, type Frame, type FrameSource, type SourceOptions, type SourceStatus } from '../../../src/ingest/index.js';
import { sleep } from './media.js';

/** A status as announced, with the Date.now() it arrived at. */
export type TimedStatus = SourceStatus & { at: number };

/** The sources a test file opens: stopAll() in afterEach stops them even when a test failed half way. */
export class OpenedSources {
  private readonly list: FrameSource[] = [];

  open(opts: SourceOptions): FrameSource {
    const s = openFrameSource(opts);
    this.list.push(s);
    return s;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.list.splice(0).map((s) => s.stop()));
  }
}

/** Every status the source announces from now on, in order. */
export function recordStatuses(source: FrameSource): TimedStatus[] {
  const list: TimedStatus[] = [];
  source.on('status', (s) => list.push({ ...s, at: Date.now() }));
  return list;
}

export interface Reading {
  /** Fill up as the source is read. */
  frames: Frame[];
  statuses: TimedStatus[];
  /** Settles at the end of the frames; rejects with the source's error. */
  done: Promise<void>;
}

/** Reads the source in the background, taking `delayMs` per frame (a slow consumer). */
export function consume(source: FrameSource, delayMs = 0): Reading {
  const statuses = recordStatuses(source);
  const frames: Frame[] = [];
  const done = (async () => {
    for await (const f of source.frames()) {
      frames.push(f);
      if (delayMs) await sleep(delayMs);
    }
  })();
  done.catch(() => {}); // the test awaits it, or not
  return { frames, statuses, done };
}

/** Reads the source to its end: its frames and statuses, and the error it threw (else undefined). */
export async function readToEnd(source: FrameSource, delayMs = 0): Promise<Omit<Reading, 'done'> & { error: unknown }> {
  const { frames, statuses, done } = consume(source, delayMs);
  const error = await done.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { frames, statuses, error };
}

export const increasing = (frames: Frame[]): boolean => frames.every((f, i) => i === 0 || f.ptsSeconds > frames[i - 1]!.ptsSeconds);

/**
 * What a resuming client of one stream can be sent: the stream's last `resumeWindow`
 * committed events (captions and statuses), the tokens of the frame in progress and the
 * latest status. A StreamRunner keeps one for the stream it runs; in cluster mode each node
 * keeps one per stream, fed from the stream's log in Redis.
 */
import type { StatusEvent, StreamEvent, TokenEvent } from '../events.js';
import type { CommittedEvent } from '../sinks/caption-log.js';

/** Tokens of the frame in progress kept for replay (bounds memory if a pipeline never commits). */
const MAX_FRAME_TOKENS = 4096;

export interface ReplayResult {
  events: StreamEvent[];
  /** Committed events in (from, to] are no longer held in memory. */
  gap?: { from: number; to: number };
  /** The client's seq is ahead of the stream (the data directory was reset). */
  ahead?: boolean;
  /** Cluster mode: this node has not read the stream up to the client's seq yet; send only what is above it. */
  wait?: boolean;
}

export class ReplayRing {
  private ring: CommittedEvent[] = [];
  /** Seq of the newest committed event no longer held (0: none). */
  private evictedUpTo = 0;
  private frameTokens: TokenEvent[] = [];
  lastStatus: StatusEvent | undefined;
  /** The highest seq pushed. */
  lastSeq = 0;

  /** `window`: how many committed events to hold (read at every push: a reload may change it). */
  constructor(private readonly window: () => number) {}

  /**
   * Starts from events read back from a log (oldest first): its committed events and the tokens
   * after the last of them; `olderSeq` is the newest committed seq not among them.
   */
  seed(events: readonly StreamEvent[], olderSeq: number): void {
    this.evictedUpTo = olderSeq;
    for (const ev of events) this.push(ev);
  }

  /** Adds the stream's next event; one at or below the last seq is ignored (false). */
  push(ev: StreamEvent): boolean {
    if (ev.seq <= this.lastSeq) return false;
    this.lastSeq = ev.seq;
    if (ev.type === 'token') {
      if (this.frameTokens.length < MAX_FRAME_TOKENS) this.frameTokens.push(ev);
      return true;
    }
    this.ring.push(ev);
    while (this.ring.length > this.window()) {
      const old = this.ring.shift();
      if (old) this.evictedUpTo = old.seq;
    }
    if (ev.type === 'status') this.lastStatus = ev;
    // A caption carries its frame's tokens; a status other than live ends the frame.
    if (ev.type === 'caption' || ev.state !== 'live') this.frameTokens = [];
    return true;
  }

  /** Events after `from` that are still held; `lastSeq` is the stream's latest seq (tokens and reservations included). */
  replayAfter(from: number, lastSeq: number): ReplayResult {
    if (from > lastSeq) return { events: this.backfill(0), ahead: true };
    const events: StreamEvent[] = [];
    for (const ev of this.ring) if (ev.seq > from) events.push(ev);
    for (const t of this.frameTokens) if (t.seq > from) events.push(t);
    events.sort((a, b) => a.seq - b.seq);
    const result: ReplayResult = { events };
    if (from < this.evictedUpTo) result.gap = { from: from + 1, to: this.evictedUpTo };
    return result;
  }

  /** The latest status plus the last `captions` captions (and the frame in progress). */
  backfill(captions: number): StreamEvent[] {
    const out: StreamEvent[] = [];
    if (captions > 0) {
      for (let i = this.ring.length - 1; i >= 0 && out.length < captions; i--) {
        const ev = this.ring[i]!;
        if (ev.type === 'caption') out.push(ev);
      }
      out.push(...this.frameTokens);
    }
    if (this.lastStatus && !out.includes(this.lastStatus)) out.push(this.lastStatus);
    return out.sort((a, b) => a.seq - b.seq);
  }
}

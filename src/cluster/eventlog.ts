/**
 * Reading a stream's event log (a Redis Stream, entry ID `0-<seq>`, field `e` the event's
 * JSON, `o` the lease it was written under): the recent events a node's replay ring starts
 * from, the committed events after a seq (HTTP history), and one blocking reader per node that
 * follows every stream's log (StreamTail) and hands new events to the node's viewers.
 */
import type { Redis } from 'ioredis';
import type { CaptionEvent, StatusEvent, StreamEvent } from '../events.js';
import type { Logger } from '../logger.js';
import { entryId, seqOfEntryId, type ClusterKeys } from './keys.js';
import { whenReady } from './redis.js';

type Entry = [id: string, fields: string[]];
export type CommittedEvent = CaptionEvent | StatusEvent;

/** The event of an entry; undefined for an entry that is not one of ours. */
export function parseEntry([id, fields]: Entry): StreamEvent | undefined {
  const seq = seqOfEntryId(id);
  const i = fields.indexOf('e');
  if (!Number.isSafeInteger(seq) || i < 0 || i % 2 !== 0) return undefined;
  try {
    const ev = JSON.parse(fields[i + 1] ?? '') as StreamEvent;
    return ev && typeof ev === 'object' && ev.seq === seq && ['token', 'caption', 'status'].includes(ev.type) ? ev : undefined;
  } catch {
    return undefined;
  }
}

function isCommitted(ev: StreamEvent): ev is CommittedEvent {
  return ev.type !== 'token';
}

export interface RecentEvents {
  /** The last `committed` captions/statuses and every token after the last of them, oldest first. */
  events: StreamEvent[];
  /** The newest committed seq older than `events` (0: the log holds nothing older). */
  olderSeq: number;
  /** The log's last seq (0: empty). */
  lastSeq: number;
}

/** The tail of a stream's log, read backwards in chunks until `committed` + 1 committed events are found. */
export async function readRecent(redis: Redis, key: string, committed: number, chunk = 1000): Promise<RecentEvents> {
  const newestFirst: StreamEvent[] = [];
  let found = 0;
  let end = '+';
  let lastSeq = 0;
  let olderSeq = 0;
  for (;;) {
    const entries = (await redis.xrevrange(key, end, '-', 'COUNT', chunk)) as Entry[];
    for (const entry of entries) {
      const ev = parseEntry(entry);
      if (!ev) continue;
      lastSeq ||= ev.seq;
      if (isCommitted(ev) && found++ === committed) {
        olderSeq = ev.seq;
        return { events: newestFirst.reverse(), olderSeq, lastSeq };
      }
      newestFirst.push(ev);
    }
    const oldest = entries.at(-1);
    if (entries.length < chunk || !oldest) break;
    end = `(${oldest[0]}`;
  }
  // The log's start: anything before its first entry was trimmed (a stream starts at seq 1).
  const first = newestFirst.at(-1);
  olderSeq = first ? Math.max(0, first.seq - 1) : lastSeq;
  return { events: newestFirst.reverse(), olderSeq, lastSeq };
}

/** Committed events with seq > `after`, oldest first, at most `limit`. */
export async function readCommittedAfter(redis: Redis, key: string, after: number, limit: number, chunk = 1000): Promise<CommittedEvent[]> {
  const out: CommittedEvent[] = [];
  let start = `(${entryId(after)}`;
  while (out.length < limit) {
    const entries = (await redis.xrange(key, start, '+', 'COUNT', chunk)) as Entry[];
    for (const entry of entries) {
      const ev = parseEntry(entry);
      if (ev && isCommitted(ev)) out.push(ev);
      if (out.length >= limit) break;
    }
    const last = entries.at(-1);
    if (entries.length < chunk || !last) break;
    start = `(${last[0]}`;
  }
  return out;
}

/**
 * One blocking reader (XREAD over every watched stream) per node: each new entry of a watched
 * stream goes to `onEvents`, in order, once. After a Redis outage it continues from the last
 * entry it read.
 */
export class StreamTail {
  /** events key → [stream id, last entry ID read]. */
  private readonly cursors = new Map<string, { id: string; last: string }>();
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly onEvents: (id: string, events: StreamEvent[]) => void,
    private readonly logger: Logger,
    private readonly blockMs = 500,
  ) {}

  /** Follows `id`'s log from the entry after `afterSeq`. */
  watch(id: string, afterSeq: number): void {
    this.cursors.set(this.keys.events(id), { id, last: entryId(afterSeq) });
    this.wake?.();
  }

  unwatch(id: string): void {
    this.cursors.delete(this.keys.events(id));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    this.redis.disconnect();
    await this.loop;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      if (this.cursors.size === 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      const keys = [...this.cursors.keys()];
      const ids = keys.map((k) => this.cursors.get(k)!.last);
      try {
        const reply = (await this.redis.xread('COUNT', 1000, 'BLOCK', this.blockMs, 'STREAMS', ...keys, ...ids)) as Array<[string, Entry[]]> | null;
        failures = 0;
        for (const [key, entries] of reply ?? []) this.deliver(key, entries);
      } catch (err) {
        if (!this.running) break;
        if (failures++ === 0) this.logger.debug({ err: (err as Error).message }, 'cluster: reading the event logs failed; retrying');
        await Promise.race([whenReady(this.redis), new Promise((r) => setTimeout(r, 1000))]);
      }
    }
  }

  private deliver(key: string, entries: Entry[]): void {
    const cursor = this.cursors.get(key);
    const last = entries.at(-1);
    if (!cursor || !last) return;
    cursor.last = last[0];
    const events: StreamEvent[] = [];
    for (const entry of entries) {
      const ev = parseEntry(entry);
      if (ev) events.push(ev);
    }
    if (events.length > 0) this.onEvents(cursor.id, events);
  }
}

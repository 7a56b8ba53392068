/**
 * The node's writer of owned streams' events into Redis. Every event of an owned stream is
 * queued here in seq order and appended to the stream's event log by the fenced append
 * script, which writes only while the lease is this node's (fencing by epoch) and whose XADD
 * refuses a seq not above the log's last (fencing by seq; a re-sent event after an ambiguous
 * failure is refused that way and counted as written). Nothing blocks the pipelines: while
 * Redis is unreachable the events wait here, up to `bufferLimit` in all; past it the oldest
 * token events of the longest queue go first, then (counted and logged) its oldest
 * captions/statuses. Queues flush in order once Redis is back.
 */
import type { Redis } from 'ioredis';
import type { StreamEvent } from '../events.js';
import { backoffDelay } from '../ingest/backoff.js';
import type { Logger } from '../logger.js';
import type { ClusterMetrics } from '../metrics.js';
import type { ClusterKeys } from './keys.js';
import { RECONNECT } from './redis.js';

/** Most events of one stream in one append call. */
const BATCH = 256;

interface Pending {
  seq: number;
  json: string;
  token: boolean;
}

interface Queue {
  /** The lease value the events are written under; undefined: held (lease lost by time, maybe adopted later). */
  lease: string | undefined;
  entries: Pending[];
  /** Called when the queue becomes empty. */
  drained: Array<() => void>;
}

export interface WriterOptions {
  maxLen: number;
  bufferLimit: number;
  logger: Logger;
  metrics: ClusterMetrics | undefined;
  /** Redis refused a stream's events: another node holds its lease now. */
  onFenced: (id: string) => void;
}

export class EventWriter {
  private readonly queues = new Map<string, Queue>();
  private total = 0;
  private flushing = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;

  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly opts: WriterOptions,
  ) {
    redis.on('ready', () => this.kick());
  }

  /** Events waiting for Redis. */
  get buffered(): number {
    return this.total;
  }

  /** The last attempt to write failed (Redis unreachable or refusing writes). */
  get failing(): boolean {
    return this.failures > 0;
  }

  /** Writes `id`'s events under `lease` from now on (events held from a lost lease included). */
  open(id: string, lease: string): void {
    const q = this.queues.get(id);
    if (q) q.lease = lease;
    else this.queues.set(id, { lease, entries: [], drained: [] });
    this.kick();
  }

  /** Queues one event of an owned (or held) stream; an event of a stream not open here is refused (counted as fenced). */
  append(id: string, ev: StreamEvent): void {
    const q = this.queues.get(id);
    if (!q) {
      this.opts.metrics?.fenced.inc();
      return;
    }
    q.entries.push({ seq: ev.seq, json: JSON.stringify(ev), token: ev.type === 'token' });
    this.total++;
    if (this.total > this.opts.bufferLimit) this.shed();
    this.opts.metrics?.buffered.set(this.total);
    this.kick();
  }

  /** The lease ran out unrenewed: keep the queued events (not written) until adopt() or discard(). */
  hold(id: string): void {
    const q = this.queues.get(id);
    if (q) q.lease = undefined;
  }

  /** The seqs of the events held for `id`, if any. */
  held(id: string): { first: number; last: number } | undefined {
    const q = this.queues.get(id);
    const first = q?.entries[0];
    const last = q?.entries.at(-1);
    return q && first && last ? { first: first.seq, last: last.seq } : undefined;
  }

  /** Removes the events up to `seq` from `id`'s queue: they are in the log already (written before an ambiguous failure). */
  forget(id: string, seq: number): void {
    const q = this.queues.get(id);
    if (!q) return;
    let n = 0;
    while (n < q.entries.length && q.entries[n]!.seq <= seq) n++;
    this.remove(q, n);
  }

  /** Drops `id`'s queue; its events are counted as fenced (never published). Returns how many. */
  discard(id: string): number {
    const q = this.queues.get(id);
    if (!q) return 0;
    this.queues.delete(id);
    const n = q.entries.length;
    this.total -= n;
    if (n > 0) this.opts.metrics?.fenced.inc(n);
    this.opts.metrics?.buffered.set(this.total);
    for (const d of q.drained) d();
    return n;
  }

  /** Resolves true once every queued event of `id` is written, false after `timeoutMs`. */
  drained(id: string, timeoutMs: number): Promise<boolean> {
    const q = this.queues.get(id);
    if (!q || q.entries.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      q.drained.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  close(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private kick(): void {
    if (this.flushing || this.retryTimer) return;
    void this.flush();
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      for (;;) {
        const batch = this.takeBatch();
        if (batch.length === 0) return;
        if (!(await this.send(batch))) {
          this.failures++;
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.kick();
          }, backoffDelay(this.failures, RECONNECT.initialMs, RECONNECT.maxMs));
          return;
        }
        if (this.failures > 0) this.opts.logger.info({ failures: this.failures }, 'cluster: events written to Redis again');
        this.failures = 0;
      }
    } finally {
      this.flushing = false;
    }
  }

  private takeBatch(): Array<{ id: string; lease: string; entries: Pending[] }> {
    const out: Array<{ id: string; lease: string; entries: Pending[] }> = [];
    for (const [id, q] of this.queues) {
      if (q.lease !== undefined && q.entries.length > 0) out.push({ id, lease: q.lease, entries: q.entries.slice(0, BATCH) });
    }
    return out;
  }

  /** One pipeline of append calls, one per stream; false when Redis did not take them. */
  private async send(batch: Array<{ id: string; lease: string; entries: Pending[] }>): Promise<boolean> {
    const pipe = this.redis.pipeline();
    for (const b of batch) {
      const args = b.entries.flatMap((e) => [e.seq, e.json]);
      pipe.casaAppend(this.keys.lease(b.id), this.keys.events(b.id), b.lease, this.opts.maxLen, ...args);
    }
    let results: Array<[Error | null, unknown]>;
    try {
      results = ((await pipe.exec()) ?? []) as Array<[Error | null, unknown]>;
    } catch (err) {
      this.opts.logger.debug({ err: (err as Error).message }, 'cluster: writing events to Redis failed');
      return false;
    }
    let ok = results.length === batch.length;
    batch.forEach((b, i) => {
      const [err, reply] = results[i] ?? [new Error('no reply'), undefined];
      if (err) {
        ok = false;
        if (!/closed|timed out|writeable/i.test(err.message)) this.opts.logger.warn({ stream: b.id, err: err.message }, 'cluster: Redis refused the events of a stream');
      } else if (reply === -1) {
        this.fenced(b.id, b.lease);
      } else {
        this.written(b.id, b.lease, b.entries.at(-1)!.seq);
      }
    });
    return ok;
  }

  /** Removes what was written (events up to `lastSeq`), unless the queue changed lease meanwhile. */
  private written(id: string, lease: string, lastSeq: number): void {
    const q = this.queues.get(id);
    if (q?.lease === lease) this.forget(id, lastSeq);
  }

  private remove(q: Queue, n: number): void {
    q.entries.splice(0, n);
    this.total -= n;
    this.opts.metrics?.buffered.set(this.total);
    if (q.entries.length === 0) for (const d of q.drained.splice(0)) d();
  }

  private fenced(id: string, lease: string): void {
    const q = this.queues.get(id);
    if (!q || q.lease !== lease) return;
    const n = this.discard(id);
    this.opts.logger.warn({ stream: id, refused: n }, 'cluster: Redis refused this node\'s events of a stream whose lease another node holds now; they were not published');
    this.opts.onFenced(id);
  }

  /** Over the bound: drops the oldest tokens of the longest queue; its oldest committed events only when it has no token left. */
  private shed(): void {
    const slack = Math.max(1, Math.floor(this.opts.bufferLimit / 100));
    let over = this.total - this.opts.bufferLimit + slack;
    while (over > 0) {
      const q = [...this.queues.values()].reduce<Queue | undefined>((a, b) => (!a || b.entries.length > a.entries.length ? b : a), undefined);
      if (!q || q.entries.length === 0) return;
      let tokens = 0;
      q.entries = q.entries.filter((e) => (e.token && tokens < over ? (tokens++, false) : true));
      let committed = 0;
      if (tokens === 0) committed = q.entries.splice(0, Math.min(over, q.entries.length)).length;
      this.total -= tokens + committed;
      over -= tokens + committed;
      if (tokens > 0) this.opts.metrics?.bufferDropped.inc({ kind: 'token' }, tokens);
      if (committed > 0) {
        this.opts.metrics?.bufferDropped.inc({ kind: 'committed' }, committed);
        this.opts.logger.error({ dropped: committed, bufferLimit: this.opts.bufferLimit }, 'cluster: Redis unreachable too long; dropped buffered captions/statuses (raise cluster.bufferLimit or fix Redis)');
      }
    }
  }
}

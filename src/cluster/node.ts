/**
 * One node of a cluster (docs/cluster.md): its Redis connections, heartbeat, the stream list,
 * the leases it holds, the fenced writer of its streams' events and the reader of every
 * stream's events. Every `renewEveryMs` (and at once on a change or a released lease) a tick
 * renews the leases, drops those it can no longer be sure of, beats, looks at who owns what,
 * reconciles the stream list, claims unowned streams by the spreading rule and hands one over
 * when the load is uneven. The daemon runs the owned streams through an OwnershipHandler.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Redis } from 'ioredis';
import type { ClusterConfig, StreamConfig } from '../config/schema.js';
import type { StreamEvent } from '../events.js';
import type { Logger } from '../logger.js';
import type { ClusterMetrics } from '../metrics.js';
import { readCommittedAfter, readRecent, StreamTail, type CommittedEvent, type RecentEvents } from './eventlog.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { mayClaim, Membership, shouldShed, type NodeLoad } from './membership.js';
import { move, type OwnershipHandler, type Owned, type OwnedStreamSink, type StopMode } from './ownership.js';
import { connectWithin, openRedis, redactUrl } from './redis.js';
import { StreamRegistry, type DeleteResult, type PutResult, type StreamRecord, type StreamValidator } from './registry.js';
import { EventWriter } from './writer.js';

/** How long start-up waits for Redis before giving up. */
const CONNECT_TIMEOUT_MS = 10_000;
/** How long a hand-over waits for the stream's last events to reach Redis. */
const DRAIN_MS = 2000;
/** Most streams claimed in one tick (the rest wait for the next). */
const MAX_CLAIMS_PER_TICK = 64;
/** Ticks in a row the load must stay uneven before a stream is handed over. */
const SHED_AFTER_TICKS = 2;

export interface ClusterNodeOptions {
  config: ClusterConfig;
  logger: Logger;
  metrics: ClusterMetrics | undefined;
  handler: OwnershipHandler;
  /** Checks a stream config read from Redis. */
  validate: StreamValidator;
  /** The config file's streams, written to the stream list when absent or different. */
  seed: StreamConfig[];
  /** The stream list changed (on any node). */
  onRecords: (records: ReadonlyMap<string, StreamRecord>) => void;
  /** New events of a watched stream, read from its log. */
  onEvents: (id: string, events: StreamEvent[]) => void;
  /** The last seq this node has seen of a stream (so that a log Redis lost does not restart seq). */
  seenSeq: (id: string) => number;
}

export interface ClusterStatus {
  node: string;
  redis: 'connected' | 'unreachable';
  degraded: boolean;
  bufferedEvents: number;
  owned: string[];
  nodes: Array<{ id: string; owned: number; accepting: boolean }>;
}

/** Events held from a lease that ran out unrenewed: adopted if this node takes the stream again first. */
interface Held {
  lease: string;
  since: number;
}

export class ClusterNode {
  readonly nodeId: string;
  readonly keys: ClusterKeys;
  private records = new Map<string, StreamRecord>();
  /** Stream id → the node whose lease it is (as last scanned). */
  private owners = new Map<string, string>();
  private readonly owned = new Map<string, Owned>();
  private readonly held = new Map<string, Held>();
  private lastNodes: NodeLoad[] = [];
  private maxStreams: number;
  private accepting = false;
  private leaving = false;
  private redisUp = true;
  /** After a reconnect, until then: only streams this node held are claimed. */
  private graceUntil = 0;
  private unevenTicks = 0;
  private needReconcile = false;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private readonly work = new Set<Promise<unknown>>();
  private readonly membership: Membership;
  private readonly registry: StreamRegistry;
  private readonly writer: EventWriter;
  private readonly tail: StreamTail;
  private readonly log: Logger;

  private constructor(
    private readonly opts: ClusterNodeOptions,
    private readonly cmd: Redis,
    private readonly sub: Redis,
    tailRedis: Redis,
  ) {
    const c = opts.config;
    this.nodeId = c.nodeId;
    this.maxStreams = c.maxStreams;
    this.keys = clusterKeys(c.keyPrefix);
    this.log = opts.logger.child({ component: 'cluster', node: c.nodeId });
    this.membership = new Membership(cmd, this.keys, c.nodeId, c.leaseMs);
    this.registry = new StreamRegistry(cmd, this.keys, opts.validate, this.log);
    this.writer = new EventWriter(cmd, this.keys, {
      maxLen: c.captionStream.maxLen,
      bufferLimit: c.bufferLimit,
      logger: this.log,
      metrics: opts.metrics,
      onFenced: (id) => this.lose(id, 'taken'),
    });
    this.tail = new StreamTail(tailRedis, this.keys, opts.onEvents, this.log);
  }

  /** Connects (or throws RedisUnavailableError), takes the node id, seeds and reads the stream list, starts ticking. */
  static async start(opts: ClusterNodeOptions): Promise<ClusterNode> {
    const c = opts.config;
    const link = { url: c.redisUrl, nodeId: c.nodeId, commandTimeoutMs: Math.max(500, c.renewEveryMs), logger: opts.logger };
    const [cmd, sub, tail] = [openRedis('commands', link), openRedis('events', link), openRedis('tail', link)];
    try {
      await Promise.all([cmd, sub, tail].map((r) => connectWithin(r, c.redisUrl, CONNECT_TIMEOUT_MS)));
      const node = new ClusterNode(opts, cmd, sub, tail);
      await node.init();
      return node;
    } catch (err) {
      for (const r of [cmd, sub, tail]) r.disconnect();
      throw err;
    }
  }

  private async init(): Promise<void> {
    await this.membership.join(this.load());
    const written = await this.registry.seed(this.opts.seed);
    this.records = await this.registry.all();
    this.opts.metrics?.streams.set(this.records.size);
    this.sub.on('message', (channel: string) => {
      if (channel === this.keys.changes) this.needReconcile = true;
      this.poke();
    });
    await this.sub.subscribe(this.keys.changes, this.keys.released);
    this.cmd.on('close', () => this.setRedisUp(false));
    this.cmd.on('ready', () => this.setRedisUp(true));
    this.setRedisUp(true);
    this.tail.start();
    this.log.info({ redis: redactUrl(this.opts.config.redisUrl), streams: this.records.size, seeded: written, maxStreams: this.maxStreams }, 'cluster: joined');
    this.schedule();
  }

  // ---- what the daemon reads ----------------------------------------------------------

  streams(): ReadonlyMap<string, StreamRecord> {
    return this.records;
  }

  /** The node holding the stream's lease, as last seen (undefined: nobody). */
  ownerOf(id: string): string | undefined {
    return this.owned.has(id) ? this.nodeId : this.owners.get(id);
  }

  status(): ClusterStatus {
    return {
      node: this.nodeId,
      redis: this.redisUp ? 'connected' : 'unreachable',
      degraded: this.degraded,
      bufferedEvents: this.writer.buffered,
      owned: [...this.owned.keys()],
      nodes: this.lastNodes.map(({ id, owned, accepting }) => ({ id, owned, accepting })),
    };
  }

  get degraded(): boolean {
    return !this.redisUp || this.writer.failing;
  }

  /** The model is loaded: claim streams from now on. */
  beginClaiming(): void {
    this.accepting = true;
    this.poke();
  }

  /** cluster.maxStreams changed (reload): above it, streams are handed over one per tick. */
  setMaxStreams(n: number): void {
    this.maxStreams = n;
    this.poke();
  }

  /** A stream's recent events: a replay view starts from them, then follows the log. */
  recent(id: string, committed: number): Promise<RecentEvents> {
    return readRecent(this.cmd, this.keys.events(id), committed);
  }

  /** Hands the stream's events after `afterSeq` to onEvents, as they are written. */
  follow(id: string, afterSeq: number): void {
    this.tail.watch(id, afterSeq);
  }

  unfollow(id: string): void {
    this.tail.unwatch(id);
  }

  history(id: string, after: number, limit: number): Promise<CommittedEvent[]> {
    return readCommittedAfter(this.cmd, this.keys.events(id), after, limit);
  }

  // ---- the stream list --------------------------------------------------------------------

  async add(config: StreamConfig, limit: number): Promise<PutResult> {
    return this.changed(await this.registry.put({ source: 'api', config }, 'add', limit));
  }

  async replace(config: StreamConfig): Promise<PutResult> {
    return this.changed(await this.registry.put({ source: 'api', config }, 'replace'));
  }

  async remove(id: string): Promise<DeleteResult> {
    return this.changed(await this.registry.delete(id, 'api'));
  }

  /** A reloaded config file: its streams written, the ones it no longer has (of `previous`) removed. */
  async reseed(streams: StreamConfig[], previous: string[]): Promise<void> {
    await this.registry.seed(streams);
    const kept = new Set(streams.map((s) => s.id));
    for (const id of previous) if (!kept.has(id)) await this.registry.delete(id, 'config');
    await this.refresh();
  }

  private async changed<T extends string>(result: T): Promise<T> {
    if (result === 'ok') await this.refresh();
    return result;
  }

  /** Reconciles the stream list now; resolves once done. */
  async refresh(): Promise<void> {
    this.needReconcile = true;
    await this.poke();
  }

  // ---- the tick ------------------------------------------------------------------------

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.poke(), this.opts.config.renewEveryMs);
  }

  /** Runs a tick now (or right after the running one); resolves when it is done. */
  private poke(): Promise<void> {
    if (this.ticking) {
      this.again = true;
      return this.ticking.then(() => this.ticking ?? undefined);
    }
    clearTimeout(this.timer);
    this.ticking = this.tick().finally(() => {
      this.ticking = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.poke();
      } else if (!this.stopped) this.schedule();
    });
    return this.ticking;
  }

  private stopped = false;

  private async tick(): Promise<void> {
    await this.renew();
    this.expire();
    try {
      await this.beat();
      await this.scanOwners();
      if (this.needReconcile) await this.reconcile();
      await this.claimStep();
      this.shedStep();
      await this.trimStep();
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'cluster: tick cut short');
    }
    this.report();
  }

  private load(): Omit<NodeLoad, 'id'> {
    const owned = this.owned.size;
    return { owned, maxStreams: this.maxStreams, accepting: this.accepting && !this.leaving && owned < this.maxStreams };
  }

  private async beat(): Promise<void> {
    const t0 = performance.now();
    const ok = await this.membership.beat(this.load());
    this.opts.metrics?.redisRoundTrip.observe((performance.now() - t0) / 1000);
    if (!ok) {
      this.log.error('cluster: another process took this node id; stopping every stream of this node');
      this.accepting = false;
      for (const id of [...this.owned.keys()]) this.lose(id, 'taken');
    }
  }

  private lastRenewAt = 0;

  /** Renews every held lease in one round trip; a lease found gone or taken is lost. */
  private async renew(): Promise<void> {
    const held = [...this.owned.values()];
    const sentAt = (this.lastRenewAt = Date.now());
    if (held.length === 0) return;
    const pipe = this.cmd.pipeline();
    for (const h of held) pipe.casaRenew(this.keys.lease(h.id), h.lease, this.opts.config.leaseMs);
    let results: Array<[Error | null, unknown]>;
    try {
      results = ((await pipe.exec()) ?? []) as Array<[Error | null, unknown]>;
    } catch {
      return;
    }
    this.opts.metrics?.leaseRenew.observe((Date.now() - sentAt) / 1000);
    held.forEach((h, i) => {
      const [err, reply] = results[i] ?? [new Error('no reply'), undefined];
      if (err || this.owned.get(h.id) !== h) return;
      if (reply === 1) h.safeUntil = sentAt + this.opts.config.leaseMs;
      else this.lose(h.id, reply === 0 ? 'expired' : 'taken');
    });
  }

  /** A lease not renewed in time may be another node's already: it is given up (Redis down, node paused). */
  private expire(): void {
    const now = Date.now();
    for (const h of [...this.owned.values()]) if (now >= h.safeUntil) this.lose(h.id, 'expired');
  }

  private async scanOwners(): Promise<void> {
    const ids = [...this.records.keys()];
    const values = ids.length > 0 ? await this.cmd.mget(...ids.map((id) => this.keys.lease(id))) : [];
    const owners = new Map<string, string>();
    ids.forEach((id, i) => {
      const v = values[i];
      if (v) owners.set(id, v.slice(0, v.lastIndexOf(':')));
    });
    this.owners = owners;
    for (const id of [...this.held.keys()]) {
      const owner = owners.get(id);
      if ((owner !== undefined && owner !== this.nodeId) || !this.records.has(id)) this.dropHeld(id, owner ? `node ${owner} took the stream` : 'stream removed');
    }
  }

  /** The stream list from Redis: owned streams removed, disabled or changed are handed over or restarted. */
  private async reconcile(): Promise<void> {
    this.needReconcile = false;
    const next = await this.registry.all();
    this.records = next;
    for (const h of [...this.owned.values()]) {
      const r = next.get(h.id);
      if (!r) void this.release(h.id, { state: 'ended', reason: 'stream removed' });
      else if (!r.config.enabled) void this.release(h.id, { state: 'ended', reason: 'disabled' });
      else if (!isDeepStrictEqual(r.config, h.record.config) && h.state !== 'releasing') {
        h.record = r;
        this.track(this.opts.handler.reconfigure(r));
      } else h.record = r;
    }
    this.opts.onRecords(next);
  }

  // ---- claiming and handing over -----------------------------------------------------

  private async claimStep(): Promise<void> {
    if (!this.accepting || this.leaving) return;
    let nodes = await this.membership.live();
    this.lastNodes = nodes;
    const tried = new Set<string>();
    for (let i = 0; i < MAX_CLAIMS_PER_TICK; i++) {
      const id = this.candidate(tried);
      if (id === undefined) break;
      const self: NodeLoad = { id: this.nodeId, ...this.load() };
      // Taking back a stream this node held (Redis was away) only needs room.
      if (!(this.held.has(id) ? self.accepting : mayClaim(self, nodes))) break;
      tried.add(id);
      if (await this.claim(id)) {
        // Claiming many streams (each started, then announced) can outlast a renewal period.
        if (Date.now() - this.lastRenewAt >= this.opts.config.renewEveryMs) await this.renew();
        await this.beat();
        nodes = this.lastNodes = await this.membership.live();
      }
    }
  }

  /** The next stream to try: one this node held first, then (after the reconnect grace) a random unowned one. */
  private candidate(tried: Set<string>): string | undefined {
    const free = (id: string): boolean => {
      const r = this.records.get(id);
      return r !== undefined && r.config.enabled && !this.owned.has(id) && !this.owners.has(id) && !tried.has(id);
    };
    for (const id of this.held.keys()) if (free(id)) return id;
    if (Date.now() < this.graceUntil) return undefined;
    const ids = [...this.records.keys()].filter(free);
    return ids[Math.floor(Math.random() * ids.length)];
  }

  /** Takes the stream's lease (false when another node was first) and has the daemon start it. */
  private async claim(id: string): Promise<boolean> {
    const record = this.records.get(id)!;
    const { leaseMs } = this.opts.config;
    const sentAt = Date.now();
    const reply = await this.cmd.casaClaim(this.keys.lease(id), this.keys.epoch(id), this.keys.events(id), this.nodeId, leaseMs);
    if (!reply) {
      this.owners.set(id, '?');
      return false;
    }
    const [epoch, lastSeq, lastBy] = reply;
    const lease = `${this.nodeId}:${epoch}`;
    const startSeq = this.adoptHeld(id, { seq: lastSeq, by: lastBy }, Math.max(lastSeq, this.opts.seenSeq(id)));
    this.writer.open(id, lease);
    const h: Owned = { id, state: 'starting', record, lease, safeUntil: sentAt + leaseMs };
    this.owned.set(id, h);
    this.owners.set(id, this.nodeId);
    this.opts.metrics?.leases.inc({ event: 'acquired' });
    this.log.info({ stream: id, epoch, startSeq }, 'cluster: lease acquired; starting the stream');
    try {
      await this.opts.handler.start(record, this.sink(id, lease, startSeq));
      if (this.owned.get(id) === h && h.state === 'starting') move(h, 'running');
    } catch (err) {
      this.log.error({ stream: id, err }, 'cluster: the stream could not start; handing it over');
      void this.release(id, { state: 'reconnecting', reason: 'the stream could not start on this node' });
    }
    return true;
  }

  /**
   * Events held from this node's lapsed lease continue the log if nothing was written since
   * but by that lease (those it wrote before an unanswered append are already in); else they
   * are dropped (fenced). Returns the seq the stream continues from.
   */
  private adoptHeld(id: string, last: { seq: number; by: string }, startSeq: number): number {
    const had = this.held.get(id);
    this.held.delete(id);
    const queued = this.writer.held(id);
    if (!queued) return startSeq;
    if (had && (queued.first > last.seq || last.by === had.lease)) {
      this.writer.forget(id, last.seq);
      this.log.info({ stream: id, events: Math.max(0, queued.last - Math.max(last.seq, queued.first - 1)) }, 'cluster: writing the events held while Redis was away');
      return Math.max(startSeq, queued.last);
    }
    this.writer.discard(id);
    return startSeq;
  }

  private sink(id: string, lease: string, startSeq: number): OwnedStreamSink {
    return {
      startSeq,
      append: (ev) => {
        // Only under this lease: a stopping pipeline of a lapsed lease may still fill the held queue.
        if (this.owned.get(id)?.lease === lease || this.held.get(id)?.lease === lease) this.writer.append(id, ev);
        else this.opts.metrics?.fenced.inc();
      },
    };
  }

  /** Hands a stream over: stopped (final status written), its events flushed, the lease released and announced. */
  private release(id: string, final: Extract<StopMode, { graceful: true }>['final']): Promise<void> {
    const h = this.owned.get(id);
    if (!h) return Promise.resolve();
    if (h.state === 'releasing') return h.work ?? Promise.resolve();
    move(h, 'releasing');
    h.work = (async () => {
      await this.opts.handler.stop(id, { graceful: true, final }).catch((err: unknown) => this.log.error({ stream: id, err }, 'cluster: stopping the stream failed'));
      await this.writer.drained(id, DRAIN_MS);
      if (this.owned.get(id) !== h) return;
      move(h, 'none');
      this.owned.delete(id);
      this.owners.delete(id);
      this.writer.discard(id);
      await this.cmd.casaRelease(this.keys.lease(id), h.lease, this.keys.released, id).catch(() => undefined);
      this.opts.metrics?.leases.inc({ event: 'released' });
      this.log.info({ stream: id, reason: final.reason }, 'cluster: lease released');
    })();
    return this.track(h.work);
  }

  /** The lease is gone: the stream stops at once. Expired: its unwritten events are held; taken: dropped. */
  private lose(id: string, how: 'expired' | 'taken'): void {
    const h = this.owned.get(id);
    if (!h) return;
    const wasReleasing = h.state === 'releasing';
    move(h, 'none');
    this.owned.delete(id);
    if (how === 'expired') {
      this.writer.hold(id);
      this.held.set(id, { lease: h.lease, since: Date.now() });
    } else {
      this.writer.discard(id);
      this.owners.delete(id);
    }
    this.opts.metrics?.leases.inc({ event: 'lost' });
    const reason = how === 'expired' ? 'its lease could not be renewed in time' : 'another node holds its lease';
    this.log.warn({ stream: id, reason }, 'cluster: lease lost; stopping the stream');
    if (!wasReleasing) this.track(this.opts.handler.stop(id, { graceful: false, reason }));
  }

  private dropHeld(id: string, why: string): void {
    this.held.delete(id);
    const n = this.writer.discard(id);
    if (n > 0) this.log.warn({ stream: id, refused: n, why }, 'cluster: events held while Redis was away were not published (fenced)');
  }

  /**
   * Above cluster.maxStreams (lowered by a reload: draining), the excess is handed over at
   * once; two ticks in a row two or more streams above another node, one stream is.
   */
  private shedStep(): void {
    if (this.leaving) return;
    const running = [...this.owned.values()].filter((h) => h.state === 'running');
    const excess = running.length - this.maxStreams;
    if (excess > 0) {
      for (const h of running.slice(-excess)) void this.release(h.id, { state: 'reconnecting', reason: 'moving to another node (this node takes fewer streams)' });
      return;
    }
    const busy = running.length < this.owned.size;
    const self: NodeLoad = { id: this.nodeId, ...this.load() };
    this.unevenTicks = this.accepting && !busy && shouldShed(self, this.lastNodes) ? this.unevenTicks + 1 : 0;
    const h = running.at(-1);
    if (this.unevenTicks < SHED_AFTER_TICKS || !h) return;
    this.unevenTicks = 0;
    void this.release(h.id, { state: 'reconnecting', reason: 'moving to another node (rebalancing)' });
  }

  private lastTrim = 0;

  /** With captionStream.maxAgeSeconds: trims the owned streams' logs by age, a few times per max age. */
  private async trimStep(): Promise<void> {
    const maxAge = this.opts.config.captionStream.maxAgeSeconds;
    if (maxAge === undefined) return;
    const now = Date.now();
    if (now - this.lastTrim < Math.min(60_000, (maxAge * 1000) / 10)) return;
    this.lastTrim = now;
    const pipe = this.cmd.pipeline();
    for (const id of this.owned.keys()) pipe.casaTrimAge(this.keys.events(id), this.keys.marks(id), now, maxAge * 1000);
    await pipe.exec();
  }

  private setRedisUp(up: boolean): void {
    if (up && !this.redisUp) {
      this.log.info('cluster: Redis reachable again');
      this.graceUntil = Date.now() + this.opts.config.leaseMs;
      this.needReconcile = true;
      void this.poke();
    } else if (!up && this.redisUp && !this.stopped) {
      this.log.warn('cluster: Redis unreachable; captioning goes on, events are buffered (degraded)');
    }
    this.redisUp = up;
    this.report();
  }

  private report(): void {
    const m = this.opts.metrics;
    if (!m) return;
    m.streamsOwned.set(this.owned.size);
    m.streams.set(this.records.size);
    m.nodes.set(this.lastNodes.length);
    m.redisUp.set(this.redisUp ? 1 : 0);
    m.degraded.set(this.degraded ? 1 : 0);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    const tracked = p.catch((err: unknown) => this.log.error({ err }, 'cluster: stream task failed')) as Promise<T>;
    this.work.add(tracked);
    void tracked.finally(() => this.work.delete(tracked));
    return tracked;
  }

  // ---- leaving -------------------------------------------------------------------------

  /**
   * Graceful stop: claims nothing more, hands every owned stream over (stopped, its last events
   * written, the lease released and announced so other nodes take it at once), leaves.
   */
  async leave(): Promise<void> {
    if (this.leaving) return;
    this.leaving = true;
    await this.membership.beat(this.load()).catch(() => undefined);
    const reason = `node ${this.nodeId} is shutting down; another node takes the stream over`;
    await Promise.all([...this.owned.keys()].map((id) => this.release(id, { state: 'reconnecting', reason })));
    await Promise.all([...this.work]);
    this.stopped = true;
    clearTimeout(this.timer);
    await this.ticking;
    for (const id of [...this.held.keys()]) this.dropHeld(id, 'node shutting down');
    await this.membership.leave().catch(() => undefined);
    this.writer.close();
    await this.tail.stop();
    this.sub.disconnect();
    await this.cmd.quit().catch(() => this.cmd.disconnect());
    this.log.info('cluster: left');
  }
}

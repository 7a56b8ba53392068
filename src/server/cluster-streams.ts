/**
 * The daemon's streams in cluster mode (docs/cluster.md): the stream list is the cluster's
 * (Redis), this node runs the streams whose leases it holds (a StreamRunner writing to the
 * node's fenced writer), and serves every stream's viewers from a view fed by the stream's
 * log in Redis: its replay ring, state and counters as this node saw them. The Redis side is
 * src/cluster/; this class is where it meets the runners, the hub and the HTTP API.
 */
import { isDeepStrictEqual } from 'node:util';
import { ClusterNode, type OwnedStreamSink, type OwnershipHandler, type StopMode, type StreamRecord } from '../cluster/index.js';
import type { ServeConfig, StreamConfig } from '../config/schema.js';
import { parseStream } from '../config/load.js';
import type { StreamEvent } from '../events.js';
import { clip } from '../logger.js';
import type { CommittedEvent } from '../sinks/caption-log.js';
import { ReplayRing, type ReplayResult } from './replay-ring.js';
import { StreamExistsError, StreamLimitError, StreamNotFoundError, StreamOwnershipError, type ClusterView, type ManagedStream, type Streams } from './stream-manager.js';
import { StreamRunner, type RunnerDeps, type RunnerState, type StreamInfo } from './stream-runner.js';

/** How far ahead of this node's view a resuming client may be and still wait (about a minute of a stream's events). */
const AHEAD_WAIT_SEQS = 1000;
/** How long a removed stream's view waits for its owner's final status before it goes. */
const REMOVED_VIEW_MS = 10_000;

/** One stream as this node serves it: replay from Redis, info from the local runner when owned here. */
class ClusterStreamView implements ManagedStream {
  readonly ring: ReplayRing;
  private captions = 0;
  private lastCaptionAt: Date | undefined;
  /** Set when the stream was removed: the view goes after its final status (or a timeout). */
  dropTimer: NodeJS.Timeout | undefined;

  constructor(
    public record: StreamRecord,
    window: () => number,
    private readonly host: { runner(id: string): StreamRunner | undefined; owner(id: string): string | null; history(id: string, after: number, limit: number): Promise<CommittedEvent[]> },
  ) {
    this.ring = new ReplayRing(window);
  }

  get id(): string {
    return this.record.config.id;
  }

  get lastSeq(): number {
    return this.ring.lastSeq;
  }

  get state(): RunnerState {
    return this.host.runner(this.id)?.state ?? this.ring.lastStatus?.state ?? (this.record.config.enabled ? 'idle' : 'disabled');
  }

  /** New events from the log: true for each one not seen before (to be published). */
  receive(ev: StreamEvent): boolean {
    if (!this.ring.push(ev)) return false;
    if (ev.type === 'caption') {
      this.captions++;
      this.lastCaptionAt = new Date();
    }
    return true;
  }

  /**
   * A client a little ahead of what this node has read (it came from a node that read the log
   * a moment earlier) waits for the events above its seq: they are on their way. Far ahead,
   * the log was reset: the client is told so, as on a single daemon.
   */
  replayAfter(from: number): ReplayResult {
    if (from > this.ring.lastSeq && from <= this.ring.lastSeq + AHEAD_WAIT_SEQS) return { events: [], wait: true };
    return this.ring.replayAfter(from, this.ring.lastSeq);
  }

  backfill(captions: number): StreamEvent[] {
    return this.ring.backfill(captions);
  }

  history(after: number, limit: number): Promise<CommittedEvent[]> {
    return this.host.history(this.id, after, limit);
  }

  info(): StreamInfo {
    const owner = this.host.owner(this.id);
    const local = this.host.runner(this.id);
    if (local) return { ...local.info(), lastSeq: Math.max(local.lastSeq, this.lastSeq), owner };
    const s = this.ring.lastStatus;
    const { config, source } = this.record;
    return {
      id: this.id,
      source,
      enabled: config.enabled,
      state: this.state,
      ...(s?.reason !== undefined ? { reason: s.reason } : {}),
      lastSeq: this.lastSeq,
      lagMs: s?.lagMs ?? 0,
      droppedFrames: s?.droppedFrames ?? 0,
      captions: this.captions,
      restarts: 0,
      ...(this.lastCaptionAt ? { lastCaptionAt: this.lastCaptionAt.toISOString() } : {}),
      owner,
      config,
    };
  }
}

export interface ClusterStreamsOptions {
  /** Sends an event to this node's subscribers (the hub). */
  publish: (ev: StreamEvent) => void;
  /** Sends an event of a stream this node runs to the outputs (MQTT, YouTube, HLS subtitles): only the owner does. */
  outputs?: (ev: StreamEvent) => void;
  /** The config now in force (validation of records read from Redis). */
  config: () => ServeConfig;
}

export class ClusterStreams implements Streams, OwnershipHandler {
  private node!: ClusterNode;
  private readonly views = new Map<string, ClusterStreamView>();
  private readonly runners = new Map<string, StreamRunner>();
  /** The runners' deps: their events go to the cluster sink (and the outputs), not straight to the hub. */
  private readonly runnerDeps: RunnerDeps;
  private fileStreams: StreamConfig[] = [];
  /** cluster.archive: owned streams also append to the local caption log. */
  private archive = false;

  constructor(
    private readonly deps: RunnerDeps,
    private maxStreams: number,
    private readonly opts: ClusterStreamsOptions,
  ) {
    this.runnerDeps = { ...deps, publish: opts.outputs ?? (() => undefined) };
  }

  async init(config: ServeConfig): Promise<void> {
    const cluster = config.cluster;
    if (!cluster) throw new Error('ClusterStreams needs a cluster config');
    this.fileStreams = config.streams;
    this.archive = cluster.archive;
    this.node = await ClusterNode.start({
      config: cluster,
      logger: this.deps.logger,
      metrics: this.deps.metrics.cluster,
      handler: this,
      validate: (c) => parseStream(c, this.opts.config()).stream,
      seed: config.streams,
      onRecords: (records) => void this.syncViews(records),
      onEvents: (id, events) => this.onEvents(id, events),
      seenSeq: (id) => this.views.get(id)?.lastSeq ?? 0,
    });
    await this.syncViews(this.node.streams());
  }

  startAll(): void {
    this.node.beginClaiming();
  }

  get(id: string): ManagedStream | undefined {
    const v = this.views.get(id);
    return v && !v.dropTimer ? v : undefined;
  }

  ids(): string[] {
    return [...this.views.values()].filter((v) => !v.dropTimer).map((v) => v.id);
  }

  list(): StreamInfo[] {
    return this.ids().map((id) => this.views.get(id)!.info());
  }

  collectStats(): void {
    for (const r of this.runners.values()) r.collectStats();
  }

  async pruneLogs(): Promise<void> {
    for (const r of this.runners.values()) await r.pruneLog().catch(() => 0);
  }

  cluster(): ClusterView {
    const owners: Record<string, string | null> = {};
    for (const id of this.ids()) owners[id] = this.node.ownerOf(id) ?? null;
    const status = this.node.status();
    return { node: this.node.nodeId, owners, degraded: status.degraded, status: { ...status } };
  }

  // ---- the stream list (any node changes it for the whole cluster) ------------------------

  async add(stream: StreamConfig): Promise<StreamInfo> {
    const r = await this.node.add(stream, this.maxStreams);
    if (r === 'exists') throw new StreamExistsError(`stream "${stream.id}" already exists`);
    if (r === 'limit') throw new StreamLimitError(`stream limit reached (limits.maxStreams = ${this.maxStreams}, for the whole cluster)`);
    this.deps.logger.info({ stream: stream.id, input: clip(stream.input) }, 'stream added (cluster)');
    return this.infoOf(stream.id);
  }

  async replace(stream: StreamConfig): Promise<StreamInfo> {
    const r = await this.node.replace(stream);
    if (r === 'missing') throw new StreamNotFoundError(`stream "${stream.id}" does not exist`);
    if (r === 'config') throw new StreamOwnershipError(`stream "${stream.id}" is defined in the config file; change it there and reload (SIGHUP)`);
    return this.infoOf(stream.id);
  }

  async remove(id: string): Promise<void> {
    const r = await this.node.remove(id);
    if (r === 'missing') throw new StreamNotFoundError(`stream "${id}" does not exist`);
    if (r === 'config') throw new StreamOwnershipError(`stream "${id}" is defined in the config file; remove it there and reload (SIGHUP)`);
  }

  /** A reload: the file's streams written to the cluster's list (the ones it dropped removed); cluster.maxStreams applied. */
  async applyConfig(config: ServeConfig): Promise<{ added: string[]; changed: string[]; removed: string[] }> {
    const before = new Map(this.fileStreams.map((s) => [s.id, s]));
    const result = { added: [] as string[], changed: [] as string[], removed: [] as string[] };
    for (const s of config.streams) {
      const old = before.get(s.id);
      if (!old) result.added.push(s.id);
      else if (!isDeepStrictEqual(old, s)) result.changed.push(s.id);
      before.delete(s.id);
    }
    result.removed = [...before.keys()];
    await this.node.reseed(config.streams, this.fileStreams.map((s) => s.id));
    this.fileStreams = config.streams;
    if (config.cluster) this.node.setMaxStreams(config.cluster.maxStreams);
    return result;
  }

  setMaxStreams(n: number): void {
    this.maxStreams = n;
  }

  /** SIGTERM: every owned stream handed over (stopped, flushed, released), then this node leaves. */
  async closeAll(): Promise<void> {
    await this.node.leave();
    for (const v of this.views.values()) clearTimeout(v.dropTimer);
  }

  private infoOf(id: string): StreamInfo {
    const v = this.views.get(id);
    if (!v) throw new StreamNotFoundError(`stream "${id}" does not exist`);
    return v.info();
  }

  // ---- the streams this node holds (OwnershipHandler) -------------------------------------

  async start(record: StreamRecord, sink: OwnedStreamSink): Promise<void> {
    const runner = await StreamRunner.create(record.config, record.source, this.runnerDeps, { sink, archive: this.archive });
    this.runners.set(record.config.id, runner);
    runner.start();
  }

  async stop(id: string, mode: StopMode): Promise<void> {
    const runner = this.runners.get(id);
    if (!runner) return;
    await (mode.graceful ? runner.close(mode.final.reason, mode.final.state) : runner.close(mode.reason, null));
    if (this.runners.get(id) === runner) this.runners.delete(id);
    this.deps.metrics.removeStream(id);
  }

  async reconfigure(record: StreamRecord): Promise<void> {
    const runner = this.runners.get(record.config.id);
    if (!runner) return;
    runner.source = record.source;
    await runner.reconfigure(record.config);
    runner.start();
    this.deps.logger.info({ stream: record.config.id, enabled: record.config.enabled }, 'stream changed');
  }

  // ---- the views ------------------------------------------------------------------------

  private onEvents(id: string, events: StreamEvent[]): void {
    const v = this.views.get(id);
    if (!v) return;
    for (const ev of events) {
      if (!v.receive(ev)) continue;
      this.opts.publish(ev);
      if (v.dropTimer && ev.type === 'status' && ev.state === 'ended') this.dropView(id);
    }
  }

  /** Views for every stream of the list (each reads its recent events, then follows its log); removed ones go. */
  private async syncViews(records: ReadonlyMap<string, StreamRecord>): Promise<void> {
    const loads: Array<Promise<void>> = [];
    for (const [id, record] of records) {
      const v = this.views.get(id);
      if (v) {
        v.record = record;
        clearTimeout(v.dropTimer);
        v.dropTimer = undefined;
        continue;
      }
      const view = new ClusterStreamView(record, () => this.deps.resumeWindow, this);
      this.views.set(id, view);
      loads.push(this.load(view));
    }
    for (const [id, v] of this.views) {
      if (records.has(id) || v.dropTimer) continue;
      v.dropTimer = setTimeout(() => this.dropView(id), REMOVED_VIEW_MS);
      v.dropTimer.unref();
    }
    await Promise.all(loads);
  }

  private async load(view: ClusterStreamView): Promise<void> {
    try {
      const recent = await this.node.recent(view.id, this.deps.resumeWindow);
      view.ring.seed(recent.events, recent.olderSeq);
      this.node.follow(view.id, view.lastSeq);
    } catch (err) {
      this.deps.logger.error({ stream: view.id, err }, 'cluster: cannot read the stream\'s recent events; resuming clients may miss some');
    }
  }

  private dropView(id: string): void {
    const v = this.views.get(id);
    if (!v?.dropTimer) return;
    clearTimeout(v.dropTimer);
    this.views.delete(id);
    this.node.unfollow(id);
  }

  // ---- ClusterStreamView's host ----------------------------------------------------------

  runner(id: string): StreamRunner | undefined {
    return this.runners.get(id);
  }

  owner(id: string): string | null {
    return this.node.ownerOf(id) ?? null;
  }

  history(id: string, after: number, limit: number): Promise<CommittedEvent[]> {
    return this.node.history(id, after, limit);
  }
}

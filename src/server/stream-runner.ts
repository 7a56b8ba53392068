/**
 * One stream of the daemon: runs its caption pipeline (restarting it per the stream's
 * policy), stamps every event with the stream id and seq, appends committed events to
 * the durable caption log before broadcasting them, and keeps the recent events that a
 * resuming client can be sent.
 */
import path from 'node:path';
import { stampEvent, type CaptionEvent, type StatusEvent, type StreamEvent, type StreamState, type UnsequencedEvent } from '../events.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { STREAM_STATES } from '../metrics.js';
import { CaptionLog, type CommittedEvent } from '../sinks/caption-log.js';
import type { StreamConfig } from '../config/schema.js';
import { classifyInput, gaveUpReason, IngestError, isLiveKind, nextRetry, retryingReason } from '../ingest/index.js';
import type { CaptionPipelineWithStats, PipelineFactory } from '../pipeline/types.js';
import type { OwnedStreamSink } from '../cluster/index.js';
import { ReplayRing, type ReplayResult } from './replay-ring.js';

export type { ReplayResult };

/** Seqs are reserved on disk in blocks of this size (see CaptionLog.reserve). */
export const SEQ_BLOCK = 1000;
/** A pipeline that ran this long (or produced a caption) resets the restart backoff. */
const HEALTHY_AFTER_MS = 30_000;

export type RunnerState = StreamState | 'idle' | 'disabled';

export interface RunnerDeps {
  factory: PipelineFactory;
  publish: (ev: StreamEvent) => void;
  metrics: Metrics;
  logger: Logger;
  dataDir: string;
  captionLog: { retentionDays: number; fsync: boolean };
  resumeWindow: number;
  /** How long pipeline.stop() may take before the stream is abandoned. */
  stopTimeoutMs: number;
}

export interface StreamInfo {
  id: string;
  source: 'config' | 'api';
  enabled: boolean;
  state: RunnerState;
  reason?: string;
  lastSeq: number;
  lagMs: number;
  droppedFrames: number;
  captions: number;
  /** Retries so far: input reconnects and pipeline restarts (the casa_live_stream_reconnects_total count). */
  restarts: number;
  /** Why the stream last retried, and when. */
  lastRestartReason?: string;
  lastRestartAt?: string;
  lastCaptionAt?: string;
  /** Cluster mode: the node that captions the stream (null: none now). */
  owner?: string | null;
  config: StreamConfig;
}

/**
 * A stream run in cluster mode: its events go to the node's fenced writer (seq continues above
 * the sink's startSeq, no local reservation); the local caption log is kept only as an
 * archive; the replay ring is the node's (fed from Redis), not the runner's.
 */
export interface ClusterRun {
  sink: OwnedStreamSink;
  archive: boolean;
}

/** How one pipeline run ended. */
interface PipelineRun {
  /** Why it failed; undefined: the input ended. */
  failure: string | undefined;
  /** A live input's failure that its ingest already retried by the policy (or cannot retry). */
  ingestFailure: boolean;
  captions: number;
  ranMs: number;
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ms);
    }),
  ]);
}

export class StreamRunner {
  config: StreamConfig;
  source: 'config' | 'api';
  readonly logger: Logger;
  /** The durable caption log (in cluster mode, only with cluster.archive). */
  private log: CaptionLog | undefined;
  private readonly replay: ReplayRing | undefined;
  private readonly sink: OwnedStreamSink | undefined;

  private seq = 0;
  private reservedUpTo = 0;

  state: RunnerState = 'idle';
  private reason: string | undefined;
  private lagMs = 0;
  private droppedFrames = 0;
  private captionCount = 0;
  private restarts = 0;
  private lastRestart: { at: Date; reason: string } | undefined;
  private lastCaptionAt: Date | undefined;
  /** The running pipeline's `ended` / `error` status, held until the runner decides what follows. */
  private held: Extract<UnsequencedEvent, { type: 'status' }> | undefined;
  /** Statuses the running pipeline reported itself. */
  private pipelineStatuses = 0;

  private loop: Promise<void> | undefined;
  private pipeline: CaptionPipelineWithStats | undefined;
  private abort: AbortController | undefined;
  private stopRequested = false;
  private wake: (() => void) | undefined;
  /** Incremented on every stop, so a detached (stuck) pipeline's late events are ignored. */
  private generation = 0;
  private closed = false;
  private statsBase = { framesIn: 0, framesDropped: 0 };
  private droppedBase = 0;
  private hasStats = false;

  private constructor(config: StreamConfig, source: 'config' | 'api', private readonly deps: RunnerDeps, cluster: ClusterRun | undefined) {
    this.config = config;
    this.source = source;
    this.logger = deps.logger.child({ stream: config.id });
    this.sink = cluster?.sink;
    if (!cluster) this.replay = new ReplayRing(() => this.deps.resumeWindow);
  }

  static async create(config: StreamConfig, source: 'config' | 'api', deps: RunnerDeps, cluster?: ClusterRun): Promise<StreamRunner> {
    const runner = new StreamRunner(config, source, deps, cluster);
    if (cluster) {
      runner.seq = cluster.sink.startSeq;
      runner.reservedUpTo = Number.POSITIVE_INFINITY;
      if (cluster.archive) runner.log = await runner.openLog();
    } else {
      runner.log = await runner.openLog();
      runner.seq = runner.log.lastSeq;
      runner.reservedUpTo = runner.log.reservedSeq;
      runner.replay?.seed(runner.log.recent, runner.log.olderSeq);
    }
    runner.state = config.enabled ? 'idle' : 'disabled';
    runner.updateStateMetric();
    runner.logger.debug({ lastSeq: runner.seq }, 'stream created');
    return runner;
  }

  private async openLog(): Promise<CaptionLog> {
    const { deps, config } = this;
    const log = await CaptionLog.open({
      dir: path.join(deps.dataDir, 'captions', config.id),
      fsync: deps.captionLog.fsync,
      retentionDays: deps.captionLog.retentionDays,
      tailEvents: deps.resumeWindow,
    });
    if (log.tornBytes > 0) {
      this.logger.warn({ file: log.tornFile, bytes: log.tornBytes }, `caption log: cut a torn last line (${log.tornBytes} bytes)`);
    }
    if (log.skippedLines > 0) {
      this.logger.warn({ skipped: log.skippedLines }, 'caption log: skipped unreadable lines');
    }
    this.logger.debug({ lastSeq: log.lastSeq, replayable: log.recent.length }, 'caption log opened');
    return log;
  }

  get id(): string {
    return this.config.id;
  }

  get lastSeq(): number {
    return this.seq;
  }

  info(): StreamInfo {
    return {
      id: this.id,
      source: this.source,
      enabled: this.config.enabled,
      state: this.state,
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      lastSeq: this.seq,
      lagMs: this.lagMs,
      droppedFrames: this.droppedFrames,
      captions: this.captionCount,
      restarts: this.restarts,
      ...(this.lastRestart ? { lastRestartReason: this.lastRestart.reason, lastRestartAt: this.lastRestart.at.toISOString() } : {}),
      ...(this.lastCaptionAt ? { lastCaptionAt: this.lastCaptionAt.toISOString() } : {}),
      config: this.config,
    };
  }

  /** Starts the pipeline loop (no-op when disabled or already running). */
  start(): void {
    if (this.closed || this.loop || !this.config.enabled) {
      if (!this.config.enabled) {
        this.state = 'disabled';
        this.updateStateMetric();
      }
      return;
    }
    this.stopRequested = false;
    if (this.state === 'idle' || this.state === 'disabled') {
      this.state = 'connecting';
      this.updateStateMetric();
    }
    const gen = this.generation;
    this.loop = this.run(gen).catch((err: unknown) => {
      this.logger.error({ err }, 'stream loop failed');
    });
  }

  /**
   * Stops the pipeline (it finishes the frame in hand; its last events are still logged
   * and broadcast), then optionally emits a final status.
   */
  async stop(final?: { state: StreamState; reason: string }): Promise<void> {
    this.stopRequested = true;
    this.abort?.abort();
    this.wake?.();
    const pipeline = this.pipeline;
    if (pipeline) {
      const r = await withTimeout(
        pipeline.stop().catch((err: unknown) => this.logger.warn({ err }, 'pipeline stop failed')),
        this.deps.stopTimeoutMs,
      );
      if (r === 'timeout') this.logger.error({ timeoutMs: this.deps.stopTimeoutMs }, 'pipeline did not stop in time; abandoning it');
    }
    if (this.loop) {
      const r = await withTimeout(this.loop, 1500);
      if (r === 'timeout') this.logger.error('pipeline events did not end after stop; abandoning them');
    }
    this.generation++;
    this.loop = undefined;
    this.pipeline = undefined;
    if (final) await this.emit({ type: 'status', state: final.state, reason: final.reason, lagMs: 0, droppedFrames: this.droppedFrames });
  }

  /** Applies a changed config: restarts this stream's pipeline only; seq and log continue. */
  async reconfigure(config: StreamConfig): Promise<void> {
    const wasRunning = this.loop !== undefined;
    if (wasRunning) await this.stop(config.enabled ? { state: 'reconnecting', reason: 'configuration changed' } : { state: 'ended', reason: 'disabled' });
    this.config = config;
    if (!config.enabled) {
      this.state = 'disabled';
      this.updateStateMetric();
    }
  }

  /**
   * Stops for good: final status (`ended`; in cluster mode `reconnecting` when the stream moves
   * to another node, none when its lease is lost), log flushed and closed.
   */
  async close(reason: string, finalState: 'ended' | 'reconnecting' | null = 'ended'): Promise<void> {
    if (this.closed) return;
    const wasActive = this.loop !== undefined || this.state !== 'disabled';
    await this.stop(wasActive && finalState !== null ? { state: finalState, reason } : undefined);
    this.closed = true;
    await this.log?.close();
  }

  /** Events after `from` that are still held, for a resuming client (in cluster mode the node's view holds them). */
  replayAfter(from: number): ReplayResult {
    return this.replay?.replayAfter(from, this.seq) ?? { events: [] };
  }

  /** The latest status plus the last `captions` captions (and the frame in progress). */
  backfill(captions: number): StreamEvent[] {
    return this.replay?.backfill(captions) ?? [];
  }

  /** Reads committed events after `from` from the durable log (HTTP history endpoint). */
  history(after: number, limit: number): Promise<CommittedEvent[]> {
    return this.log?.readAfter(after, limit) ?? Promise.resolve([]);
  }

  pruneLog(): Promise<number> {
    return this.log?.prune() ?? Promise.resolve(0);
  }

  /** Folds the pipeline's own counters into the metrics (called before each scrape). */
  collectStats(): void {
    const p = this.pipeline;
    if (!p || typeof p.stats !== 'function') return;
    let s;
    try {
      s = p.stats();
    } catch (err) {
      this.logger.debug({ err }, 'pipeline stats failed');
      return;
    }
    const labels = { stream: this.id };
    if (typeof s.framesIn === 'number' && s.framesIn > this.statsBase.framesIn) {
      this.deps.metrics.framesIn.inc(labels, s.framesIn - this.statsBase.framesIn);
      this.statsBase.framesIn = s.framesIn;
    }
    if (typeof s.framesDropped === 'number' && s.framesDropped > this.statsBase.framesDropped) {
      this.deps.metrics.framesDropped.inc(labels, s.framesDropped - this.statsBase.framesDropped);
      this.statsBase.framesDropped = s.framesDropped;
    }
    if (typeof s.kvTokens === 'number') this.deps.metrics.kvTokens.set(labels, s.kvTokens);
  }

  /**
   * The pipeline loop: runs the stream's pipeline, and when it ends or fails, restarts it or
   * ends the stream, by the stream's one retry policy (its `restart` block, which the
   * pipeline's ingest also follows for a live input: see restartOrEnd()).
   */
  private async run(gen: number): Promise<void> {
    let failures = 0;
    if (!this.stopRequested) await this.emit({ type: 'status', state: 'connecting', reason: 'starting', lagMs: 0, droppedFrames: 0 });
    while (!this.stopRequested && gen === this.generation) {
      const run = await this.runPipeline(gen);
      if (this.stopRequested || gen !== this.generation) break;
      if (run.captions > 0 || run.ranMs > HEALTHY_AFTER_MS) failures = 0;
      failures++;
      const next = this.restartOrEnd(run, failures);
      if ('final' in next) {
        await this.emit({ type: 'status', state: next.final, reason: next.reason, lagMs: 0, droppedFrames: this.droppedFrames });
        break;
      }
      await this.restartAfter(next.delayMs, retryingReason(next.what, next.delayMs, failures), failures);
    }
    if (gen === this.generation) this.loop = undefined;
  }

  /** One pipeline, from its creation to the end of its events: how it ended. */
  private async runPipeline(gen: number): Promise<PipelineRun> {
    const abort = new AbortController();
    this.abort = abort;
    const startedAt = Date.now();
    const captionsBefore = this.captionCount;
    this.held = undefined;
    this.pipelineStatuses = 0;
    let failure: string | undefined;
    let ingestFailure = false;
    try {
      const pipeline: CaptionPipelineWithStats = this.deps.factory(this.config, {
        signal: abort.signal,
        logger: this.logger,
        onStartup: (ms) => this.onStartup(ms),
      });
      this.pipeline = pipeline;
      this.hasStats = typeof pipeline.stats === 'function';
      this.statsBase = { framesIn: 0, framesDropped: 0 };
      this.droppedBase = 0;
      if (this.stopRequested) void pipeline.stop().catch(() => undefined);
      for await (const ev of pipeline.events) {
        if (gen !== this.generation) break;
        await this.onPipelineEvent(ev);
      }
      // A pipeline that reported `error` and then ended has failed, not just ended.
      failure = this.heldFailure();
    } catch (err) {
      failure = errorMessage(err);
      ingestFailure = err instanceof IngestError && isLiveKind(classifyInput(this.config.input).kind);
      this.logger.warn({ err }, 'stream pipeline failed');
    } finally {
      this.collectStats();
      this.pipeline = undefined;
    }
    return { failure, ingestFailure, captions: this.captionCount - captionsBefore, ranMs: Date.now() - startedAt };
  }

  /**
   * After a pipeline run: the delay before the next one, or the stream's final status. The
   * ingest already retried a live input by the same policy, so its failures end the stream;
   * the runner restarts what the ingest does not retry (a file that ended under `always`, a
   * file that failed, a model or session failure), with the same nextRetry() rule.
   */
  private restartOrEnd(run: PipelineRun, failures: number): { delayMs: number; what: string } | { final: 'ended' | 'error'; reason: string } {
    const policy = this.config.restart;
    const what = run.failure ?? 'input ended';
    if (run.failure === undefined && policy.policy !== 'always') return { final: 'ended', reason: what };
    if (run.failure !== undefined && (policy.policy === 'never' || run.ingestFailure)) return { final: 'error', reason: what };
    const settings = { ...policy, maxRetries: policy.maxRetries ?? Infinity };
    const next = nextRetry(settings, { consecutive: failures, wasUp: run.captions > 0 });
    if (!next.retry) return { final: 'error', reason: next.gaveUp ? gaveUpReason(what, next.gaveUp) : what };
    return { delayMs: next.delayMs, what };
  }

  /** The reason of a held `error` status (a pipeline that reported `error` and then ended). */
  private heldFailure(): string | undefined {
    const held = this.held;
    return held?.state === 'error' ? (held.reason ?? 'pipeline error') : undefined;
  }

  /** Announces the restart (`reconnecting`, counted), then waits; stop() cuts the wait short. */
  private async restartAfter(delayMs: number, reason: string, failures: number): Promise<void> {
    this.countRestart(reason);
    await this.emit({ type: 'status', state: 'reconnecting', reason, lagMs: 0, droppedFrames: this.droppedFrames });
    this.logger.info({ retry: failures, delayMs, reason }, 'restarting stream pipeline');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delayMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = undefined;
  }

  /** A retry of the stream (its ingest reconnected, or its pipeline restarts): counted and remembered. */
  private countRestart(reason: string | undefined): void {
    this.restarts++;
    this.lastRestart = { at: new Date(), reason: reason ?? 'retrying' };
    this.deps.metrics.reconnects.inc({ stream: this.id });
  }

  private onStartup(startupMs: number): void {
    this.deps.metrics.streamStartup.observe({ stream: this.id }, Math.max(0, startupMs) / 1000);
  }

  /**
   * One event of the running pipeline. Its `ended` and `error` statuses are held back until
   * the run is over: the runner then says whether the stream restarts (`reconnecting`) or
   * ends, so that `error` always means the daemon gave up (docs/protocol.md). A `live` is
   * added before the first token only for a pipeline that reports no status of its own.
   */
  private async onPipelineEvent(ev: UnsequencedEvent): Promise<void> {
    if (ev === null || typeof ev !== 'object' || !['token', 'caption', 'status'].includes((ev as { type?: string }).type ?? '')) {
      this.logger.warn({ event: ev }, 'pipeline emitted an unknown event; ignored');
      return;
    }
    if (ev.type === 'status' && (ev.state === 'ended' || ev.state === 'error')) {
      this.pipelineStatuses++;
      this.held = ev;
      return;
    }
    const held = this.held;
    this.held = undefined;
    if (held) await this.emit(held); // the pipeline went on after all
    if (ev.type === 'status') {
      this.pipelineStatuses++;
      if (ev.state === 'reconnecting') this.countRestart(ev.reason);
    } else if (this.pipelineStatuses === 0 && this.state !== 'live') {
      await this.emit({ type: 'status', state: 'live', lagMs: this.lagMs, droppedFrames: this.droppedFrames });
    }
    await this.emit(ev);
  }

  private async nextSeq(): Promise<number> {
    this.seq += 1;
    if (this.seq > this.reservedUpTo && this.log) {
      this.reservedUpTo = this.seq + SEQ_BLOCK - 1;
      try {
        await this.log.reserve(this.reservedUpTo);
      } catch (err) {
        this.logger.error({ err }, 'caption log: cannot persist seq reservation');
      }
    }
    return this.seq;
  }

  /** Sequences one event, logs it when committed (cluster mode: to the node's writer), then broadcasts it. */
  private async emit(ev: UnsequencedEvent): Promise<void> {
    if (this.closed) return;
    const seq = await this.nextSeq();
    const out = stampEvent(ev, this.id, seq);
    const labels = { stream: this.id };
    const m = this.deps.metrics;
    switch (out.type) {
      case 'token':
        m.tokens.inc(labels);
        break;
      case 'caption':
        this.captionCount++;
        this.lastCaptionAt = new Date();
        m.captions.inc(labels);
        if (Number.isFinite(out.latencyMs)) m.captionLatency.observe(labels, Math.max(0, out.latencyMs) / 1000);
        if (!this.hasStats) m.framesIn.inc(labels);
        await this.commit(out);
        break;
      case 'status':
        this.state = out.state;
        this.reason = out.reason;
        this.lagMs = out.lagMs ?? 0;
        if (typeof out.droppedFrames === 'number') {
          if (!this.hasStats && out.droppedFrames > this.droppedBase) m.framesDropped.inc(labels, out.droppedFrames - this.droppedBase);
          this.droppedBase = Math.max(this.droppedBase, out.droppedFrames);
          this.droppedFrames = out.droppedFrames;
        }
        this.updateStateMetric();
        await this.commit(out);
        break;
    }
    this.replay?.push(out);
    this.sink?.append(out);
    this.deps.publish(out);
  }

  private async commit(ev: CaptionEvent | StatusEvent): Promise<void> {
    if (!this.log) return;
    try {
      await this.log.append(ev);
      this.deps.metrics.captionLogWrites.inc({ stream: this.id });
    } catch (err) {
      this.deps.metrics.captionLogErrors.inc({ stream: this.id });
      this.logger.error({ err, seq: ev.seq }, 'caption log append failed; event broadcast without being logged');
    }
  }

  private updateStateMetric(): void {
    for (const s of STREAM_STATES) {
      const current = this.state === 'idle' ? 'connecting' : this.state === 'disabled' ? 'stopped' : this.state;
      this.deps.metrics.streamState.set({ stream: this.id, state: s }, s === current ? 1 : 0);
    }
  }
}

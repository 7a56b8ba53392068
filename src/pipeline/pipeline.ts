/**
 * The caption pipeline of one stream (DESIGN §1): ingest (one ffmpeg child, frames scaled
 * to the model's input size) → caption session (one per stream, on a shared CaptionModel) →
 * events. It implements the pipeline contract of src/pipeline/types.ts, which the CLI,
 * the daemon and the benchmarks consume.
 *
 * Events, in order:
 * - `status` for every state change of the source (connecting, live, reconnecting, ended,
 *   error), with the session's lag and the source's dropped-frame count, and a `live`
 *   status with a reason when frames start being dropped (at most every 5 s);
 * - for each frame, its `token` events as they are sampled, then its `caption`.
 * The iteration ends when the input ends or the pipeline is stopped; when the input fails
 * for good, the `error` status comes first and then the iteration throws the typed error
 * (an InputError, exit code 3).
 *
 * Lag (`lagMs` of status events and stats): how far the session is behind the newest
 * frame. The source keeps at most the newest frame waiting; when the session is done with
 * a frame it asks for the next one, and the lag is how long that frame had already been
 * waiting (asked at − received at), 0 when the session was waiting for it. It holds until
 * the session takes the next frame.
 */
import type { CaptionModel, CaptionSessionLike, SessionOptions } from '../engine.js';
import type { UnsequencedEvent, StatusEvent } from '../events.js';
import { openFrameSource, retryingReason } from '../ingest/index.js';
import type { Fit, Frame, FrameSource, IngestLogger, SourceOptions, SourceStatus } from '../ingest/index.js';
import { clip } from '../logger.js';
import { AsyncQueue } from './queue.js';
import type { CaptionPipelineHandle, CaptionPipelineStats, StopOptions } from './types.js';

export type { CaptionPipelineHandle, StopOptions };

export interface CaptionPipelineOptions {
  /** The shared model (or a promise of it: the pipeline waits, and fails if loading fails). */
  model: CaptionModel | Promise<CaptionModel>;
  /** Path, URL, /dev/videoN or "-". */
  input: string;
  /** Frames per second captioned (default: the model's generation.fps). */
  fps?: number;
  /** Files and stdin: read at the video's own speed, dropping frames the session cannot keep up with. */
  realtime?: boolean;
  /** Session settings (sampling, context cap, seed); absent fields take the model's defaults. */
  generation?: SessionOptions;
  /** Stop after this many frames. */
  maxFrames?: number;
  /** How frames of another aspect ratio are fitted (default: the model's image.fit). */
  fit?: Fit;
  logger?: IngestLogger;
  /** Aborting stops the pipeline (as stop()). */
  signal?: AbortSignal;
  /** Further ingest options (reconnect policy, timeouts, ffmpeg paths, stdin stream, …). */
  source?: Partial<Omit<SourceOptions, 'input' | 'width' | 'height' | 'fps' | 'realtime' | 'maxFrames' | 'fit' | 'logger'>>;
  /** Events waiting for the consumer before generation pauses (default 1024). */
  highWaterMark?: number;
  /** Called with each frame the session takes from the source, before it is captioned. */
  onFrame?: (frame: Frame) => void;
  /** Called with each ingest attempt's start-up time (ffmpeg spawned → first frame, ms). */
  onStartup?: (startupMs: number) => void;
}

const DROP_REPORT_INTERVAL_MS = 5000;
const silent: IngestLogger = { info() {}, warn() {}, error() {}, debug() {} };

export function createCaptionPipeline(opts: CaptionPipelineOptions): CaptionPipelineHandle {
  return new Pipeline(opts);
}

class Pipeline implements CaptionPipelineHandle {
  readonly events: AsyncQueue<UnsequencedEvent>;
  readonly session: Promise<CaptionSessionLike>;
  private resolveSession!: (s: CaptionSessionLike) => void;
  private rejectSession!: (e: unknown) => void;
  private readonly opts: CaptionPipelineOptions;
  private readonly log: IngestLogger;
  private source: FrameSource | undefined;
  private sess: CaptionSessionLike | undefined;
  private running: Promise<void>;
  private stopRequested = false;
  private immediate = false;
  private stopPromise: Promise<void> | undefined;
  private framesIn = 0;
  private framesCaptioned = 0;
  private lagMs = 0;
  private fps = 0;
  private image!: CaptionModel['image'];
  private reportedDrops = 0;
  private lastState: string | undefined;
  private finalStatus: Omit<StatusEvent, 'stream' | 'seq'> | undefined;
  private lastDropReport = 0;
  private durationWaiters: Array<(s: FrameSource | undefined) => void> = [];

  constructor(opts: CaptionPipelineOptions) {
    this.opts = opts;
    this.log = opts.logger ?? silent;
    this.events = new AsyncQueue<UnsequencedEvent>(() => this.stop({ immediate: true }));
    this.session = new Promise<CaptionSessionLike>((resolve, reject) => {
      this.resolveSession = resolve;
      this.rejectSession = reject;
    });
    this.session.catch(() => undefined);
    if (opts.signal?.aborted) this.stopRequested = true;
    opts.signal?.addEventListener('abort', () => void this.stop(), { once: true });
    // Start at once: the daemon iterates right away, the CLI too; events wait in the queue.
    this.running = this.run();
  }

  get stopped(): Promise<void> {
    return this.running;
  }

  stats(): CaptionPipelineStats {
    let kvTokens = 0;
    try {
      if (this.sess && !this.sess.closed) kvTokens = this.sess.stats().textKvTokens;
    } catch {
      /* closed meanwhile */
    }
    return {
      framesIn: this.framesIn,
      framesDropped: this.source?.droppedFrames ?? 0,
      kvTokens,
      framesCaptioned: this.framesCaptioned,
      lagMs: this.lagMs,
    };
  }

  async durationSeconds(): Promise<number | undefined> {
    const source = this.source ?? (await new Promise<FrameSource | undefined>((resolve) => this.durationWaiters.push(resolve)));
    return source ? source.durationSeconds() : undefined;
  }

  stop(options: StopOptions = {}): Promise<void> {
    if (options.immediate) this.immediate = true;
    this.stopRequested = true;
    this.events.wakeProducers();
    if (!this.stopPromise) {
      this.stopPromise = (async () => {
        await this.source?.stop();
        await this.running;
      })();
    }
    return this.stopPromise;
  }

  private status(s: Pick<StatusEvent, 'state'> & { reason?: string | undefined }): Omit<StatusEvent, 'stream' | 'seq'> {
    return {
      type: 'status',
      state: s.state,
      ...(s.reason !== undefined ? { reason: s.reason } : {}),
      lagMs: Math.round(this.lagMs),
      droppedFrames: this.source?.droppedFrames ?? 0,
    };
  }

  private onSourceStatus = (s: SourceStatus): void => {
    let reason = s.reason;
    if (s.state === 'reconnecting' && s.retryInMs !== undefined) reason = retryingReason(reason ?? 'input failed', s.retryInMs, s.retry ?? 1);
    if (s.state === 'connecting' && reason === undefined) reason = 'opening input';
    if (s.state === 'live' && s.startupMs !== undefined) this.opts.onStartup?.(s.startupMs);
    this.reportedDrops = s.droppedFrames;
    const ev = this.status({ state: s.state, reason });
    // The source ends (or fails) while its last frames are still being captioned: report
    // that once they are done, so `ended` / `error` is the stream's last event.
    if (s.state === 'ended' || s.state === 'error') this.finalStatus = ev;
    else this.pushStatus(ev);
  };

  private pushStatus(ev: Omit<StatusEvent, 'stream' | 'seq'>): void {
    this.lastState = ev.state;
    this.events.push(ev);
  }

  private releaseDurationWaiters(): void {
    const ws = this.durationWaiters;
    this.durationWaiters = [];
    for (const w of ws) w(this.source);
  }

  private async run(): Promise<void> {
    let failure: unknown;
    try {
      const session = await this.openSession();
      const source = session && this.openSource();
      if (session && source) await this.captionFrames(session, source);
    } catch (err) {
      failure = err;
    } finally {
      await this.release(failure);
    }
    this.end(failure);
  }

  /** Waits for the model and opens the session; undefined when a stop came first. */
  private async openSession(): Promise<CaptionSessionLike | undefined> {
    const model = await this.opts.model;
    if (this.stopRequested) return undefined;
    this.fps = this.opts.fps ?? model.fps;
    this.image = model.image;
    const session = await model.openSession({ ...(this.opts.generation ?? {}), fps: this.fps });
    this.sess = session;
    this.resolveSession(session);
    return this.stopRequested ? undefined : session;
  }

  /** Starts ingest at the model's input size; undefined when a stop came first. */
  private openSource(): FrameSource | undefined {
    const source = openFrameSource({
      ...(this.opts.source ?? {}),
      input: this.opts.input,
      width: this.image.width,
      height: this.image.height,
      fit: this.opts.fit ?? this.image.fit,
      fps: this.fps,
      ...(this.opts.realtime !== undefined ? { realtime: this.opts.realtime } : {}),
      ...(this.opts.maxFrames !== undefined ? { maxFrames: this.opts.maxFrames } : {}),
      logger: this.log,
    });
    this.source = source;
    this.releaseDurationWaiters();
    source.on('status', this.onSourceStatus);
    return this.stopRequested ? undefined : source;
  }

  /** Captions every frame the source delivers, until it ends or a stop. */
  private async captionFrames(session: CaptionSessionLike, source: FrameSource): Promise<void> {
    const hwm = this.opts.highWaterMark ?? 1024;
    let askedAt = Date.now();
    for await (const frame of source.frames()) {
      this.take(frame, askedAt);
      for await (const ev of session.captionFrame(frame)) {
        if (ev.type === 'caption') this.framesCaptioned++;
        this.events.push(ev);
        if (this.immediate) break;
      }
      this.reportDrops(source);
      if (this.stopRequested) break;
      await this.events.waitBelow(hwm, () => this.stopRequested);
      askedAt = Date.now();
    }
  }

  /** The session takes a frame it asked for at `askedAt`: the lag is how long the frame had waited. */
  private take(frame: Frame, askedAt: number): void {
    this.framesIn++;
    this.lagMs = Math.max(0, askedAt - frame.receivedAt);
    this.opts.onFrame?.(frame);
  }

  /** Stops ingest, closes the session and queues the source's final status. */
  private async release(failure: unknown): Promise<void> {
    this.releaseDurationWaiters();
    await this.source?.stop().catch(() => undefined);
    this.source?.off('status', this.onSourceStatus);
    this.sess?.close();
    if (this.finalStatus) this.pushStatus({ ...this.finalStatus, lagMs: Math.round(this.lagMs) });
    if (!this.sess) this.rejectSession(failure ?? new Error('the pipeline stopped before its session opened'));
  }

  /** Ends the event queue, with the failure (after an `error` status) when there was one. */
  private end(failure: unknown): void {
    if (failure === undefined) {
      this.events.end();
      return;
    }
    const message = failure instanceof Error ? failure.message : String(failure);
    this.log.error({ input: clip(this.opts.input), err: message }, 'caption pipeline failed');
    // The source reports its own fatal errors; anything else (model, session) gets one too.
    if (this.lastState !== 'error') this.pushStatus(this.status({ state: 'error', reason: message }));
    this.events.end(failure);
  }

  /** A `live` status when the source dropped frames since the last report (rate-limited). */
  private reportDrops(source: FrameSource): void {
    const dropped = source.droppedFrames;
    if (dropped <= this.reportedDrops) return;
    const now = Date.now();
    if (now - this.lastDropReport < DROP_REPORT_INTERVAL_MS) return;
    this.lastDropReport = now;
    this.reportedDrops = dropped;
    this.pushStatus(this.status({ state: 'live', reason: `captioning is slower than the input: ${dropped} frame${dropped === 1 ? '' : 's'} dropped so far` }));
  }
}

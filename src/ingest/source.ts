/**
 * A frame source: one ffmpeg child at a time per stream, frames out as an async iterable,
 * liveness (watchdog, reconnects with backoff) and state as 'status' events. See docs/ingest.md.
 */
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { UsageError } from '../errors.js';
import type { StreamState } from '../events.js';
import { resolveFfmpeg, type ResolvedFfmpeg } from './binaries.js';
import { killAndWait, runCapture } from './children.js';
import {
  CorruptInputError,
  FfmpegFailedError,
  FileNotFoundError,
  FileUnreadableError,
  IngestError,
  StreamDroppedError,
  StreamStalledError,
} from './errors.js';
import { buildFfmpegArgs } from './ffmpeg-args.js';
import { startFfmpeg, type FfmpegChild, type FfmpegExit } from './ffmpeg-command.js';
import { classifyFailure, isNoiseLine, parseDurationLine, parseShowinfoLine } from './ffmpeg-stderr.js';
import { FrameAssembler } from './frame-assembler.js';
import { classifyInput, type ClassifiedInput } from './input.js';
import { FIT_MODES, type Fit, type Frame, type FrameSource, type IngestLogger, type SourceKind, type SourceOptions, type SourceStatus } from './types.js';

export const DEFAULTS = {
  fit: 'letterbox' as Fit,
  fps: 2,
  stallTimeoutMs: 10_000,
  ioTimeoutMs: 5_000,
  initialDelayMs: 500,
  maxDelayMs: 30_000,
};

const silentLogger: IngestLogger = { info() {}, warn() {}, error() {}, debug() {} };

/** Opens a source. Throws at once (UsageError / UnsupportedInputError) for bad options or inputs. */
export function openFrameSource(opts: SourceOptions): FrameSource {
  return new FfmpegFrameSource(opts);
}

/**
 * Delay before reconnect attempt `attempt` (1, 2, …): exponential from `initialMs`, capped at
 * `maxMs`, with "equal jitter" (uniform in [d/2, d]) so that many streams do not retry in step.
 */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const d = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(d / 2 + random() * (d / 2));
}

type Mode = 'backpressure' | 'drop';
type Outcome = { type: 'end'; reason: string } | { type: 'fail'; error: IngestError };

interface Attempt {
  number: number;
  child?: FfmpegChild;
  assembler: FrameAssembler;
  /** pts (s) from showinfo, not yet matched with a frame. */
  pts: number[];
  wakePts?: () => void;
  stderrDone: boolean;
  /** Last stderr lines, showinfo excluded. */
  lines: string[];
  frames: number;
  base?: number;
  lastT?: number;
  stalled: boolean;
  exited: boolean;
  waitingOnConsumer: boolean;
}

interface Waiter {
  resolve: (r: IteratorResult<Frame>) => void;
  reject: (e: unknown) => void;
}

class FfmpegFrameSource extends EventEmitter implements FrameSource {
  private readonly input: ClassifiedInput;
  private readonly width: number;
  private readonly height: number;
  private readonly fit: Fit;
  private readonly fps: number;
  private readonly realtime: boolean;
  private readonly rtspTransport: 'tcp' | 'udp';
  private readonly stallTimeoutMs: number;
  private readonly ioTimeoutMs: number;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxRetries: number;
  private readonly maxFrames: number | undefined;
  private readonly opts: SourceOptions;
  private readonly log: IngestLogger;
  private readonly stdinStream: Readable | undefined;

  private _kind: SourceKind;
  private mode: Mode;
  private _status: SourceStatus;
  private _droppedFrames = 0;
  private _reconnects = 0;

  private started = false;
  private announced = false;
  private iterated = false;
  private stopping = false;
  private halted = false;
  private done = false;
  private fatalError: Error | undefined;
  private errorThrown = false;
  private loopPromise: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;

  private attempt: Attempt | undefined;
  private slot: Frame | undefined;
  private slotFreed: (() => void) | undefined;
  private waiter: Waiter | undefined;
  private handedOut = 0;
  private nextIndex = 0;
  private lastPts: number | undefined;
  private lastFrameAt = 0;
  private lastActivity = 0;
  private consecutiveFailures = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeRetry: (() => void) | undefined;
  private readonly probes = new Set<ChildProcess>();
  private durationPromise: Promise<number | undefined> | undefined;

  constructor(opts: SourceOptions) {
    super();
    this.input = classifyInput(opts.input);
    this.opts = opts;
    this.width = positiveInt(opts.width, 'width', 16384);
    this.height = positiveInt(opts.height, 'height', 16384);
    this.fit = opts.fit ?? DEFAULTS.fit;
    if (!FIT_MODES.includes(this.fit)) throw new UsageError(`fit must be one of ${FIT_MODES.join(', ')}, not "${String(this.fit)}".`);
    this.fps = opts.fps ?? DEFAULTS.fps;
    if (!(Number.isFinite(this.fps) && this.fps > 0 && this.fps <= 240)) {
      throw new UsageError(`fps must be a number above 0 and at most 240, not ${String(opts.fps)}.`);
    }
    this.realtime = opts.realtime ?? false;
    this.rtspTransport = opts.rtspTransport ?? 'tcp';
    if (this.rtspTransport !== 'tcp' && this.rtspTransport !== 'udp') {
      throw new UsageError(`rtspTransport must be tcp or udp, not "${String(opts.rtspTransport)}".`);
    }
    this.stallTimeoutMs = positiveNumber(opts.stallTimeoutMs ?? DEFAULTS.stallTimeoutMs, 'stallTimeoutMs');
    this.ioTimeoutMs = positiveNumber(opts.ioTimeoutMs ?? DEFAULTS.ioTimeoutMs, 'ioTimeoutMs');
    this.initialDelayMs = nonNegative(opts.reconnect?.initialDelayMs ?? DEFAULTS.initialDelayMs, 'reconnect.initialDelayMs');
    this.maxDelayMs = Math.max(this.initialDelayMs, nonNegative(opts.reconnect?.maxDelayMs ?? DEFAULTS.maxDelayMs, 'reconnect.maxDelayMs'));
    this.maxRetries = nonNegative(opts.reconnect?.maxRetries ?? Infinity, 'reconnect.maxRetries');
    this.maxFrames = opts.maxFrames === undefined ? undefined : positiveInt(opts.maxFrames, 'maxFrames', Number.MAX_SAFE_INTEGER);
    this.log = opts.logger ?? silentLogger;
    this.stdinStream = this.input.kind === 'stdin' ? (opts.stdin ?? process.stdin) : undefined;
    this._kind = this.input.kind;
    this.mode = this.initialMode();
    this._status = { state: 'connecting', droppedFrames: 0, reconnects: 0 };
  }

  get kind(): SourceKind {
    return this._kind;
  }

  get droppedFrames(): number {
    return this._droppedFrames;
  }

  get reconnects(): number {
    return this._reconnects;
  }

  get status(): SourceStatus {
    return { ...this._status, droppedFrames: this._droppedFrames, reconnects: this._reconnects };
  }

  override on(event: 'status', fn: (s: SourceStatus) => void): this;
  override on(event: string | symbol, fn: (...args: any[]) => void): this;
  override on(event: string | symbol, fn: (...args: any[]) => void): this {
    return super.on(event, fn);
  }

  override off(event: 'status', fn: (s: SourceStatus) => void): this;
  override off(event: string | symbol, fn: (...args: any[]) => void): this;
  override off(event: string | symbol, fn: (...args: any[]) => void): this {
    return super.off(event, fn);
  }

  private initialMode(): Mode {
    if (this._kind === 'file' || this._kind === 'stdin') return this.realtime ? 'drop' : 'backpressure';
    return 'drop';
  }

  private get retries(): boolean {
    return this._kind === 'live' || this._kind === 'device';
  }

  // ---------------------------------------------------------------- consumer side

  frames(): AsyncIterable<Frame> {
    if (this.iterated) throw new UsageError('frames() of a frame source can be iterated only once.');
    this.iterated = true;
    const iterator: AsyncIterator<Frame> = {
      next: () => this.next(),
      return: async () => {
        await this.stop();
        return { done: true, value: undefined };
      },
    };
    return { [Symbol.asyncIterator]: () => iterator };
  }

  private async next(): Promise<IteratorResult<Frame>> {
    if (this.slot) return { done: false, value: this.takeSlot() };
    if (this.done || this.stopping) return this.endResult();
    this.start();
    if (this.waiter) throw new UsageError('frames(): next() called again before the previous call settled.');
    return new Promise<IteratorResult<Frame>>((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private takeSlot(): Frame {
    const frame = this.slot!;
    this.slot = undefined;
    if (this.mode === 'backpressure') this.lastActivity = Date.now();
    const release = this.slotFreed;
    this.slotFreed = undefined;
    release?.();
    this.countHandedOut();
    return frame;
  }

  private countHandedOut(): void {
    this.handedOut++;
    if (this.maxFrames !== undefined && this.handedOut >= this.maxFrames && !this.halted) {
      this.halt();
    }
  }

  /** After the run loop has exited (no child left): done, or the fatal error once. */
  private async endResult(): Promise<IteratorResult<Frame>> {
    await this.loopPromise;
    await this.stopPromise;
    if (this.fatalError && !this.errorThrown) {
      this.errorThrown = true;
      throw this.fatalError;
    }
    return { done: true, value: undefined };
  }

  /** Wakes a waiting next() once the source is done. Called when the run loop has exited. */
  private settleWaiter(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    if (this.slot) {
      w.resolve({ done: false, value: this.takeSlot() });
      return;
    }
    if (this.fatalError && !this.errorThrown) {
      this.errorThrown = true;
      w.reject(this.fatalError);
    } else {
      w.resolve({ done: true, value: undefined });
    }
  }

  // ---------------------------------------------------------------- lifecycle

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.loopPromise = this.runLoop();
  }

  stop(): Promise<void> {
    if (!this.stopPromise) this.stopPromise = this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    this.slot = undefined;
    this.cancelRetryWait();
    const att = this.attempt;
    if (att) {
      att.assembler.discard();
      att.wakePts?.();
    }
    this.slotFreed?.();
    this.slotFreed = undefined;
    await Promise.all([att?.child?.kill(), ...[...this.probes].map((p) => killAndWait(p))]);
    await this.loopPromise;
    if (!this.done) this.finish('stopped');
    this.clearWatchdog();
    this.settleWaiter();
  }

  /** Internal end after maxFrames: keeps frames already handed out, kills ffmpeg. */
  private halt(): void {
    this.halted = true;
    const att = this.attempt;
    if (att) {
      att.assembler.discard();
      att.wakePts?.();
      void att.child?.kill();
    }
    this.cancelRetryWait();
    this.slot = undefined;
    this.slotFreed?.();
    this.slotFreed = undefined;
  }

  private async runLoop(): Promise<void> {
    try {
      const bin = await resolveFfmpeg({
        ...(this.opts.ffmpegPath ? { ffmpegPath: this.opts.ffmpegPath } : {}),
        ...(this.opts.ffprobePath ? { ffprobePath: this.opts.ffprobePath } : {}),
        logger: this.log,
      });
      if (this.stopping || this.halted) return;
      if (this.input.kind === 'file') await this.checkFile();
      if (this.stopping || this.halted) return;
      this.setState('connecting');
      this.startWatchdog();
      for (let n = 1; ; n++) {
        const outcome = await this.runAttempt(bin, n);
        if (this.stopping || this.halted) return;
        if (outcome.type === 'end') {
          this.finish(outcome.reason);
          return;
        }
        const err = outcome.error;
        if (!this.retries || err.code === 'protocol-unavailable') throw err;
        this.consecutiveFailures++;
        if (this.consecutiveFailures > this.maxRetries) throw err;
        this._reconnects++;
        const delay = backoffDelay(this.consecutiveFailures, this.initialDelayMs, this.maxDelayMs);
        this.log.warn(
          { input: this.input.display, code: err.code, err: err.message, details: err.details, retryInMs: delay, attempt: this.consecutiveFailures },
          'input failed; reconnecting',
        );
        this.setState('reconnecting', { reason: err.message, code: err.code, retryInMs: delay }, true);
        await this.waitBeforeRetry(delay);
        if (this.stopping || this.halted) return;
      }
    } catch (err) {
      if (!this.stopping) this.fail(err);
    } finally {
      if (this.halted && !this.done) this.finish('maxFrames reached');
      this.clearWatchdog();
      this.attempt = undefined;
      // Settle after the loop promise itself has resolved, so that endResult() sees it.
      queueMicrotask(() => this.settleWaiter());
    }
  }

  private async checkFile(): Promise<void> {
    const path = this.input.path!;
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new FileNotFoundError(this.input.display, { cause: err });
      throw new FileUnreadableError(this.input.display, (err as Error).message, { cause: err });
    }
    if (st.isDirectory()) throw new FileUnreadableError(this.input.display, 'it is a directory');
    try {
      await access(path, fsConstants.R_OK);
    } catch (err) {
      throw new FileUnreadableError(this.input.display, 'permission denied', { cause: err });
    }
    if (st.isFile() && st.size === 0) throw new CorruptInputError(this.input.display, 'the file is empty');
  }

  private finish(reason: string): void {
    if (this.done) return;
    this.done = true;
    this.setState('ended', { reason });
    this.log.info({ input: this.input.display, reason, droppedFrames: this._droppedFrames }, 'input ended');
  }

  private fail(err: unknown): void {
    if (this.done) return;
    const error = err instanceof Error ? err : new Error(String(err));
    this.fatalError = error;
    this.done = true;
    const code = (error as { code?: unknown }).code;
    this.setState('error', { reason: error.message, ...(typeof code === 'string' ? { code } : {}) });
    this.log.error(
      { input: this.input.display, code, err: error.message, details: (error as { details?: string[] }).details },
      'input failed',
    );
  }

  private setState(state: StreamState, extra: Omit<SourceStatus, 'state' | 'droppedFrames' | 'reconnects'> = {}, force = false): void {
    if (this.announced && !force && this._status.state === state && this._status.reason === extra.reason) return;
    this.announced = true;
    this._status = { state, ...extra, droppedFrames: this._droppedFrames, reconnects: this._reconnects };
    if (state === 'live' || state === 'connecting') {
      this.log.info({ input: this.input.display, state }, `input ${state}`);
    }
    try {
      this.emit('status', this.status);
    } catch (err) {
      // A listener's bug must not break the source's state machine.
      this.log.error({ input: this.input.display, err: (err as Error)?.message }, 'status listener threw');
    }
  }

  private waitBeforeRetry(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeRetry = resolve;
      this.retryTimer = setTimeout(resolve, ms);
    });
  }

  private cancelRetryWait(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.wakeRetry?.();
    this.wakeRetry = undefined;
  }

  // ---------------------------------------------------------------- watchdog

  private get effectiveStallMs(): number {
    // Never shorter than two frame intervals plus a second, or a low fps would look stalled.
    return Math.max(this.stallTimeoutMs, 2000 / this.fps + 1000);
  }

  private startWatchdog(): void {
    const every = Math.max(50, Math.min(500, this.effectiveStallMs / 4));
    this.watchdog = setInterval(() => this.checkStall(), every);
    this.watchdog.unref();
  }

  private clearWatchdog(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  private checkStall(): void {
    const att = this.attempt;
    if (!att || !att.child || att.exited || att.stalled || att.waitingOnConsumer || this.stopping || this.halted) return;
    const idle = Date.now() - this.lastActivity;
    if (idle <= this.effectiveStallMs) return;
    att.stalled = true;
    this.log.warn({ input: this.input.display, idleMs: idle, pid: att.child.pid }, 'no frame within the stall timeout; killing ffmpeg');
    void att.child.kill();
  }

  // ---------------------------------------------------------------- one ffmpeg run

  private async runAttempt(bin: ResolvedFfmpeg, number: number): Promise<Outcome> {
    const att: Attempt = {
      number,
      assembler: new FrameAssembler(this.width * this.height * 3, (rgb) => this.onRawFrame(att, rgb)),
      pts: [],
      stderrDone: false,
      lines: [],
      frames: 0,
      stalled: false,
      exited: false,
      waitingOnConsumer: false,
    };
    this.attempt = att;
    const finished = new Promise<void>((resolve) => att.assembler.once('finish', () => resolve()));
    const isHttp = this.input.scheme === 'http' || this.input.scheme === 'https';
    const remaining = this.maxFrames !== undefined ? this.maxFrames - this.handedOut : undefined;
    const args = buildFfmpegArgs({
      input: this.input,
      width: this.width,
      height: this.height,
      fit: this.fit,
      fps: this.fps,
      readAtNativeRate: this.realtime && (this._kind === 'file' || this._kind === 'stdin' || isHttp),
      rtspTransport: this.rtspTransport,
      ioTimeoutMs: this.ioTimeoutMs,
      features: bin.features,
      ...(this.opts.inputFormat ? { inputFormat: this.opts.inputFormat } : {}),
      ...(this.mode === 'backpressure' && remaining !== undefined && remaining > 0 ? { maxOutputFrames: remaining } : {}),
    });
    this.lastActivity = Date.now();
    const child = startFfmpeg({
      ffmpegPath: bin.ffmpegPath,
      input: this.stdinStream ?? args.input,
      inputOptions: args.inputOptions,
      outputOptions: args.outputOptions,
      stdout: att.assembler,
      onStderrLine: (line) => this.onStderrLine(att, line, isHttp),
    });
    att.child = child;
    if (this.stopping || this.halted) void child.kill();
    const exit: FfmpegExit = await child.closed;
    att.exited = true;
    att.stderrDone = true;
    att.wakePts?.();
    this.log.debug({ input: this.input.display, attempt: number, command: child.commandLine, exit }, 'ffmpeg exited');

    // Frames still in the pipe go to the consumer (at its pace for files) before the run's
    // outcome counts; stop() and halt() discard them instead.
    if (!exit.startError) await finished;

    if (this.stopping || this.halted) return { type: 'end', reason: 'stopped' };
    const details = att.lines.slice(-12);
    if (att.stalled) {
      return { type: 'fail', error: new StreamStalledError(this.input.display, this.effectiveStallMs / 1000, { details }) };
    }
    if (exit.startError) {
      return {
        type: 'fail',
        error: new FfmpegFailedError(this.input.display, `it could not be started (${exit.startError.message})`, {
          details,
          cause: exit.startError,
        }),
      };
    }
    if (exit.code === 0 && exit.signal === null) {
      if (!this.retries) {
        if (att.assembler.leftoverBytes > 0) {
          this.log.warn({ input: this.input.display, bytes: att.assembler.leftoverBytes }, 'ffmpeg output ended inside a frame');
        }
        if (this.nextIndex === 0) {
          const bad = /Invalid data found|Error while decoding|invalid frame|corrupt|partial file|Truncat\w*|could not find codec parameters/i.exec(
            att.lines.join('\n'),
          );
          if (bad) {
            return { type: 'fail', error: new CorruptInputError(this.input.display, `no frame could be decoded: ${bad[0]}`, { details }) };
          }
          return { type: 'end', reason: 'end of input (no frames)' };
        }
        return { type: 'end', reason: 'end of input' };
      }
      // A live input that "ends" has dropped (RTSP servers going away make ffmpeg exit 0).
      return { type: 'fail', error: new StreamDroppedError(this.input.display, 'the stream ended', { details }) };
    }
    return {
      type: 'fail',
      error: classifyFailure({
        input: this.input,
        lines: att.lines,
        exitCode: exit.code,
        signal: exit.signal,
        ioTimeoutMs: this.ioTimeoutMs,
        ffmpegPath: bin.ffmpegPath,
        frames: att.frames,
      }),
    };
  }

  private onStderrLine(att: Attempt, line: string, isHttp: boolean): void {
    const pts = parseShowinfoLine(line);
    if (pts !== undefined) {
      if (pts !== null) {
        att.pts.push(pts);
        const wake = att.wakePts;
        att.wakePts = undefined;
        wake?.();
      }
      return;
    }
    if (isHttp && att.frames === 0 && this._kind === 'live') {
      const d = parseDurationLine(line);
      if (d !== undefined && d !== null && d > 0) {
        // VOD over http (an mp4, or an HLS playlist with ENDLIST): file semantics from now on.
        this._kind = 'file';
        this.mode = this.realtime ? 'drop' : 'backpressure';
        this.log.info({ input: this.input.display, durationSeconds: d }, 'http input has a duration; reading it as a file');
      }
    }
    if (isNoiseLine(line)) return;
    att.lines.push(line);
    if (att.lines.length > 40) att.lines.shift();
    this.log.debug({ input: this.input.display, line }, 'ffmpeg');
  }

  private async onRawFrame(att: Attempt, rgb: Buffer): Promise<void> {
    if (this.stopping || this.halted || att !== this.attempt) return;
    while (att.pts.length === 0 && !att.stderrDone && !this.stopping && !this.halted) {
      await new Promise<void>((resolve) => {
        att.wakePts = resolve;
      });
    }
    if (this.stopping || this.halted) return;
    let t = att.pts.shift() ?? Number.NaN;
    const now = Date.now();
    if (!Number.isFinite(t)) t = att.lastT === undefined ? 0 : att.lastT + 1 / this.fps;
    att.lastT = t;
    if (att.base === undefined) {
      // First attempt: the stream's own clock. After a reconnect the new ffmpeg starts again
      // near 0, so continue from the last frame plus the time the stream was away.
      att.base = this.lastPts === undefined ? 0 : this.lastPts + Math.max(1 / this.fps, (now - this.lastFrameAt) / 1000) - t;
    }
    let pts = att.base + t;
    if (this.lastPts !== undefined && pts <= this.lastPts) {
      const fixed = this.lastPts + 1 / this.fps;
      att.base += fixed - pts;
      pts = fixed;
    }
    pts = Math.round(pts * 1e6) / 1e6;
    this.lastPts = pts;
    this.lastFrameAt = now;
    this.lastActivity = now;
    att.frames++;
    const frame: Frame = { index: this.nextIndex++, ptsSeconds: pts, receivedAt: now, width: this.width, height: this.height, rgb };
    if (att.frames === 1) {
      this.consecutiveFailures = 0;
      this.setState('live');
    }

    // Backpressure (files, stdin): hold this frame, and with it ffmpeg, while the consumer has
    // not taken the one in the slot. Drop mode never waits.
    while (this.slot && this.mode === 'backpressure' && !this.waiter) {
      att.waitingOnConsumer = true;
      await new Promise<void>((resolve) => {
        this.slotFreed = resolve;
      });
      att.waitingOnConsumer = false;
      if (this.stopping || this.halted || att !== this.attempt) return;
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      this.countHandedOut();
      w.resolve({ done: false, value: frame });
      return;
    }
    if (this.slot) this._droppedFrames++; // drop mode: the newest frame wins
    this.slot = frame;
  }

  // ---------------------------------------------------------------- duration

  durationSeconds(): Promise<number | undefined> {
    const isHttp = this.input.scheme === 'http' || this.input.scheme === 'https';
    if (this.input.kind !== 'file' && !isHttp) return Promise.resolve(undefined);
    if (!this.durationPromise) this.durationPromise = this.probeDuration(isHttp);
    return this.durationPromise;
  }

  private async probeDuration(isHttp: boolean): Promise<number | undefined> {
    try {
      const bin = await resolveFfmpeg({
        ...(this.opts.ffmpegPath ? { ffmpegPath: this.opts.ffmpegPath } : {}),
        ...(this.opts.ffprobePath ? { ffprobePath: this.opts.ffprobePath } : {}),
        logger: this.log,
      });
      if (this.stopping) return undefined;
      const args = [
        '-v',
        'error',
        ...(isHttp ? ['-rw_timeout', String(Math.round(this.ioTimeoutMs * 1000))] : []),
        '-show_entries',
        'format=duration',
        '-of',
        'default=noprint_wrappers=1:nokey=1',
        this.input.ffmpegInput,
      ];
      const res = await runCapture(bin.ffprobePath, args, {
        timeoutMs: Math.max(20_000, this.ioTimeoutMs * 2),
        onChild: (c) => {
          this.probes.add(c);
          c.once('exit', () => this.probes.delete(c));
          if (this.stopping) void killAndWait(c);
        },
      });
      const d = Number.parseFloat(res.stdout.trim());
      return Number.isFinite(d) && d > 0 ? d : undefined;
    } catch (err) {
      this.log.debug({ input: this.input.display, err: (err as Error).message }, 'ffprobe failed');
      return undefined;
    }
  }
}

function positiveInt(v: unknown, name: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > max) {
    throw new UsageError(`${name} must be a whole number from 1 to ${max}, not ${String(v)}.`);
  }
  return v;
}

function positiveNumber(v: unknown, name: string): number {
  if (typeof v !== 'number' || !(v > 0)) throw new UsageError(`${name} must be a number above 0, not ${String(v)}.`);
  return v;
}

function nonNegative(v: unknown, name: string): number {
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) throw new UsageError(`${name} must be 0 or more, not ${String(v)}.`);
  return v;
}


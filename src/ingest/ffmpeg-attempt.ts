/**
 * One ffmpeg attempt of a frame source: starts ffmpeg, reads its stderr (frame pts, the input's
 * duration, the last lines for errors), turns its raw frames into Frames for the hand-off, and
 * says how the run ended (an end of input, or a typed failure).
 */
import { mkdirSync } from 'node:fs';
import { clip, OUTPUT_LINE_CHARS } from '../logger.js';
import type { ResolvedFfmpeg } from './binaries.js';
import { ConnectionRefusedError, ConnectTimeoutError, CorruptInputError, FfmpegFailedError, StreamDroppedError, StreamStalledError, type IngestError } from './errors.js';
import { buildFfmpegArgs } from './ffmpeg-args.js';
import { startFfmpeg, type FfmpegChild, type FfmpegExit } from './ffmpeg-command.js';
import { classifyFailure, endpointOf, isNoiseLine, parseDurationLine, parseShowinfoLine } from './ffmpeg-stderr.js';
import { FrameAssembler } from './frame-assembler.js';
import type { FrameHandoff } from './frame-handoff.js';
import { effectiveStallMs, type ResolvedSourceOptions } from './source-options.js';
import { canCheckRefusal, refusalCheck, type RefusalCheck } from './reachability.js';
import type { StartQueue, StartTicket } from './start-queue.js';
import type { AttemptStamper, StreamClock } from './stream-clock.js';
import { isLiveKind, type Frame, type SourceKind } from './types.js';

export type AttemptOutcome = { type: 'end'; reason: string } | { type: 'fail'; error: IngestError };

/** What an attempt needs from its source. */
export interface AttemptHost {
  readonly options: ResolvedSourceOptions;
  readonly clock: StreamClock;
  readonly handoff: FrameHandoff;
  /** Where the attempt waits for a start slot before spawning ffmpeg. */
  readonly starts: StartQueue;
  /** The source's kind now (an http input becomes a file when ffmpeg reports a duration). */
  readonly kind: SourceKind;
  /** stop() or halt() is under way: frames are thrown away and ffmpeg is being killed. */
  readonly discarding: boolean;
  /** An http input reported a finite duration (VOD): read it as a file from now on. */
  becameFile(durationSeconds: number): void;
  /** Stream activity (ffmpeg started, a frame came out): resets the stall watchdog. */
  touch(): void;
  /** The attempt's first frame, `startupMs` after ffmpeg was spawned. */
  firstFrame(startupMs: number): void;
}

/** ffmpeg's last stderr lines kept for errors, and those put in an error's details. */
const KEPT_LINES = 40;
const DETAIL_LINES = 12;
/** The longest command line logged (the longest stderr line kept: OUTPUT_LINE_CHARS). */
const COMMAND_CHARS = 1000;
const NOTHING_DECODED_RE = /Invalid data found|Error while decoding|invalid frame|corrupt|partial file|Truncat\w*|could not find codec parameters/i;

export class FfmpegAttempt {
  readonly number: number;
  private readonly host: AttemptHost;
  private readonly bin: ResolvedFfmpeg;
  private readonly isHttp: boolean;
  private readonly assembler: FrameAssembler;
  /**
   * Stamps the attempt's frames on the stream's clock. Made when ffmpeg is spawned — after the
   * refusal check and the wait for a start slot — so that the attempt's place on the clock (its
   * HLS output's offset) counts the time the stream was away up to ffmpeg's start.
   */
  private stamp: AttemptStamper | undefined;
  private child: FfmpegChild | undefined;
  /** The start slot: held from spawning ffmpeg to its first frame (or its end). */
  private ticket: StartTicket | undefined;
  /** A retry's TCP check of the server, while it runs. */
  private check: RefusalCheck | undefined;
  private spawnedAt = 0;
  /** pts (s) from showinfo, not yet matched with a frame. */
  private readonly pts: number[] = [];
  private wakePts: (() => void) | undefined;
  /** Set once ffmpeg has exited and its stderr has been read to the end. */
  private exit: FfmpegExit | undefined;
  /** Set when the watchdog killed ffmpeg: how long no frame had come. */
  private stalledAfterMs: number | undefined;
  /** The watchdog killed ffmpeg before its first frame (connect timeout, not a stall). */
  private stalledConnecting = false;
  /** Last stderr lines, showinfo and noise excluded. */
  private readonly lines: string[] = [];
  private frames = 0;

  constructor(number: number, bin: ResolvedFfmpeg, host: AttemptHost) {
    this.number = number;
    this.bin = bin;
    this.host = host;
    const { input, width, height } = host.options;
    this.isHttp = input.scheme === 'http' || input.scheme === 'https';
    this.assembler = new FrameAssembler(width * height * 3, (rgb) => this.onRawFrame(rgb));
  }

  /** Frames this attempt delivered. */
  get framesDelivered(): number {
    return this.frames;
  }

  /** Running, not yet declared stalled, and not held back by a slow consumer: the watchdog may judge it. */
  get watchable(): boolean {
    return this.child !== undefined && this.exit === undefined && this.stalledAfterMs === undefined && !this.host.handoff.holdingProducer;
  }

  /**
   * Fails at once when an RTSP server refuses connections; else waits for a start slot,
   * then runs ffmpeg until it has exited and its last frame is handed over. Says how it ended.
   */
  async run(): Promise<AttemptOutcome> {
    if (await this.serverRefuses()) {
      if (this.host.discarding) return { type: 'end', reason: 'stopped' };
      const { input } = this.host.options;
      return { type: 'fail', error: new ConnectionRefusedError(input.display, endpointOf(input)) };
    }
    this.ticket = this.host.starts.request();
    const granted = await this.ticket.granted;
    try {
      if (!granted || this.host.discarding) return { type: 'end', reason: 'stopped' };
      return await this.runFfmpeg();
    } finally {
      this.ticket.release();
    }
  }

  /** An RTSP input: does its server refuse connections (then no ffmpeg is started)? */
  private async serverRefuses(): Promise<boolean> {
    const o = this.host.options;
    if (!canCheckRefusal(o.input) || this.host.discarding) return false;
    this.check = refusalCheck(o.input, o.ioTimeoutMs);
    return this.check.refused;
  }

  private async runFfmpeg(): Promise<AttemptOutcome> {
    const finished = new Promise<void>((resolve) => this.assembler.once('finish', () => resolve()));
    const child = this.start();
    if (this.host.discarding) void child.kill();
    const exit = await child.closed;
    this.exit = exit;
    this.wakePts?.();
    const command = child.commandLine === undefined ? undefined : clip(child.commandLine, COMMAND_CHARS);
    this.host.options.log.debug({ input: this.host.options.input.display, attempt: this.number, command, exit }, 'ffmpeg exited');
    // Frames still in the pipe go to the consumer (at its pace for files) before the run's
    // outcome counts; stop() and halt() discard them instead.
    if (!exit.startError) await finished;
    if (this.host.discarding) return { type: 'end', reason: 'stopped' };
    return this.judge(exit);
  }

  /** The watchdog's verdict: no frame for `idleMs`. SIGKILLs ffmpeg; the run fails as stalled. */
  stall(idleMs: number): void {
    this.stalledAfterMs = idleMs;
    this.stalledConnecting = this.frames === 0;
    this.host.options.log.warn(
      { input: this.host.options.input.display, idleMs, pid: this.child?.pid },
      this.stalledConnecting ? 'no first frame within the connect timeout; killing ffmpeg' : 'no frame within the stall timeout; killing ffmpeg',
    );
    void this.child?.kill();
  }

  /** Stop / halt: from now on ffmpeg's output is thrown away (and a wait for a start slot ends). */
  abandon(): void {
    this.check?.cancel();
    this.ticket?.release();
    this.assembler.discard();
    this.wakePts?.();
  }

  /** SIGKILLs ffmpeg; resolves once it has been reaped. */
  kill(): Promise<void> {
    return this.child?.kill() ?? Promise.resolve();
  }

  private start(): FfmpegChild {
    const o = this.host.options;
    const kind = this.host.kind;
    const remaining = this.host.handoff.remainingFrames;
    this.spawnedAt = Date.now();
    const stamp = this.host.clock.forAttempt(this.spawnedAt);
    this.stamp = stamp;
    const args = buildFfmpegArgs({
      input: o.input,
      width: o.width,
      height: o.height,
      fit: o.fit,
      fps: o.fps,
      readAtNativeRate: o.realtime && (kind === 'file' || kind === 'stdin' || this.isHttp),
      rtspTransport: o.rtspTransport,
      ioTimeoutMs: o.ioTimeoutMs,
      features: this.bin.features,
      ...(o.inputFormat ? { inputFormat: o.inputFormat } : {}),
      ...(o.decode ? { decode: o.decode } : {}),
      // Only where no frame is ever dropped can ffmpeg count the frames still wanted.
      ...(this.host.handoff.mode === 'backpressure' && remaining !== undefined && remaining > 0 ? { maxOutputFrames: remaining } : {}),
      ...(o.hls ? { hls: { options: o.hls, offsetSeconds: stamp.base } } : {}),
    });
    if (o.hls) mkdirSync(o.hls.dir, { recursive: true });
    this.host.touch();
    this.child = startFfmpeg({
      ffmpegPath: this.bin.ffmpegPath,
      input: o.stdin ?? args.input,
      inputOptions: args.inputOptions,
      outputOptions: args.outputOptions,
      stdout: this.assembler,
      ...(args.extraOutput ? { extraOutput: args.extraOutput } : {}),
      onStderrLine: (line) => this.onStderrLine(line),
      niceness: o.decode?.nice,
    });
    return this.child;
  }

  private onStderrLine(line: string): void {
    const pts = parseShowinfoLine(line);
    if (pts !== undefined) {
      if (pts !== null) {
        this.pts.push(pts);
        const wake = this.wakePts;
        this.wakePts = undefined;
        wake?.();
      }
      return;
    }
    if (this.isHttp && this.frames === 0 && this.host.kind === 'live') {
      const d = parseDurationLine(line);
      if (d !== undefined && d !== null && d > 0) this.host.becameFile(d);
    }
    if (isNoiseLine(line)) return;
    // ffmpeg quotes its input in some lines: kept (and logged) clipped.
    line = clip(line, OUTPUT_LINE_CHARS);
    this.lines.push(line);
    if (this.lines.length > KEPT_LINES) this.lines.shift();
    this.host.options.log.debug({ input: this.host.options.input.display, line }, 'ffmpeg');
  }

  /**
   * One frame out of ffmpeg's stdout: matched with its pts from stderr, stamped on the stream's
   * clock, handed over. Attempts run one after another (run() returns after the last frame), so
   * a frame always belongs to the source's current attempt.
   */
  private async onRawFrame(rgb: Buffer): Promise<void> {
    if (this.host.discarding) return;
    while (this.pts.length === 0 && this.exit === undefined && !this.host.discarding) {
      await new Promise<void>((resolve) => {
        this.wakePts = resolve;
      });
    }
    if (this.host.discarding || this.stamp === undefined) return;
    const now = Date.now();
    const { index, ptsSeconds } = this.stamp(this.pts.shift() ?? Number.NaN, now);
    this.host.touch();
    this.frames++;
    const { width, height } = this.host.options;
    const frame: Frame = { index, ptsSeconds, receivedAt: now, width, height, rgb };
    if (this.frames === 1) {
      this.ticket?.release();
      this.host.firstFrame(now - this.spawnedAt);
    }
    // Backpressure (files, stdin): holds this frame, and with it ffmpeg, until the consumer has
    // taken the one waiting. Drop mode never waits.
    await this.host.handoff.offer(frame, () => this.host.discarding);
  }

  /** How the run ended, from ffmpeg's exit and stderr. */
  private judge(exit: FfmpegExit): AttemptOutcome {
    const o = this.host.options;
    const details = this.lines.slice(-DETAIL_LINES);
    if (this.stalledAfterMs !== undefined && this.stalledConnecting) {
      return { type: 'fail', error: new ConnectTimeoutError(o.input.display, o.connectTimeoutMs / 1000, { details }) };
    }
    if (this.stalledAfterMs !== undefined) {
      return { type: 'fail', error: new StreamStalledError(o.input.display, effectiveStallMs(o) / 1000, { details }) };
    }
    if (exit.startError) {
      const why = `it could not be started (${exit.startError.message})`;
      return { type: 'fail', error: new FfmpegFailedError(o.input.display, why, { details, cause: exit.startError }) };
    }
    if (exit.code === 0 && exit.signal === null) return this.judgeCleanExit(details);
    const error = classifyFailure({
      input: o.input,
      lines: this.lines,
      exitCode: exit.code,
      signal: exit.signal,
      ioTimeoutMs: o.ioTimeoutMs,
      ffmpegPath: this.bin.ffmpegPath,
      frames: this.frames,
    });
    return { type: 'fail', error };
  }

  /** ffmpeg exited 0: the end of a file (or stdin), a drop for a live input. */
  private judgeCleanExit(details: string[]): AttemptOutcome {
    const { input, log } = this.host.options;
    if (isLiveKind(this.host.kind)) {
      // A live input that "ends" has dropped (RTSP servers going away make ffmpeg exit 0).
      return { type: 'fail', error: new StreamDroppedError(input.display, 'the stream ended', { details }) };
    }
    if (this.assembler.leftoverBytes > 0) {
      log.warn({ input: input.display, bytes: this.assembler.leftoverBytes }, 'ffmpeg output ended inside a frame');
    }
    if (this.host.clock.frames > 0) return { type: 'end', reason: 'end of input' };
    const bad = NOTHING_DECODED_RE.exec(this.lines.join('\n'));
    if (bad) return { type: 'fail', error: new CorruptInputError(input.display, `no frame could be decoded: ${bad[0]}`, { details }) };
    return { type: 'end', reason: 'end of input (no frames)' };
  }
}

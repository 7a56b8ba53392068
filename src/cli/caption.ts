/**
 * `casa-live caption <input>`: one stream, captions shown live, optional SRT / WebVTT /
 * JSONL / burned-in video outputs (docs/cli.md).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Model, type CaptionModel } from '../engine.js';
import { CasaLiveError } from '../errors.js';
import { stampEvent, type CaptionEvent, type StreamEvent } from '../events.js';
import { isLiveKind, resolveFfmpeg, SOURCE_DEFAULTS } from '../ingest/index.js';
import type { Logger } from '../logger.js';
import { createCaptionPipeline, type CaptionPipelineOptions } from '../pipeline/pipeline.js';
import type { CaptionPipelineHandle } from '../pipeline/types.js';
import { loadModelRef } from '../pipeline/models.js';
import { assertCanBurnIn, burnIn } from '../sinks/burn-in.js';
import { JsonlWriter } from '../sinks/jsonl.js';
import { normalise, type Cue, type CueSegmenter } from '../sinks/segmenter.js';
import { SubtitleFileWriter, createSegmenter, type SubtitleStyle } from '../sinks/subtitles.js';
import { resolveCaptionPlan, type CaptionArgs, type CaptionFeeds, type CaptionPlan, type OutputPaths } from './caption-plan.js';
import { MQTT_DEFAULTS, type OutputsConfig } from '../config/schema.js';
import { SinkFanout, configuredOutputs } from '../sinks/outputs.js';
import { CaptionDisplay, formatDuration, type DisplayMode } from './display.js';
import { ExitRequest, cliLogger, type CliIo } from './common.js';
import { releaseEarlySignals } from './signals.js';

export type { CaptionArgs };

/** After Ctrl-C the frame in hand may finish for this long; then it is cut. */
const GRACE_MS = 500;

/** Captions on stdout (on a terminal: live), or on stderr when stdout carries the JSONL events. */
function createDisplay(plan: CaptionPlan, io: CliIo): CaptionDisplay {
  let mode: DisplayMode;
  let out: NodeJS.WriteStream = io.stdout;
  if (plan.quiet) mode = 'off';
  else if (plan.outputs.jsonl === '-') {
    mode = io.stderr.isTTY ? 'tty' : 'off';
    out = io.stderr;
  } else mode = io.stdout.isTTY ? 'tty' : 'plain';
  const color = mode === 'tty' && io.env.NO_COLOR === undefined && io.env.TERM !== 'dumb';
  return new CaptionDisplay({ mode, out, err: io.stderr, color });
}

// ------------------------------------------------------------------ outputs

/** The files a run writes (SRT, WebVTT, JSONL), its live feeds (MQTT, YouTube) and the cues kept for burning in. */
class CaptionOutputs {
  private feeds: SinkFanout | undefined;
  srt?: SubtitleFileWriter;
  vtt?: SubtitleFileWriter;
  jsonl?: JsonlWriter;
  burnCues?: Cue[];
  private burnSegmenter?: CueSegmenter;
  /** End of the last captioned frame. */
  private streamEnd?: number;

  open(paths: OutputPaths, lines: { lineLength: number; style: SubtitleStyle }, stdout: NodeJS.WriteStream): void {
    const options = { maxLineChars: lines.lineLength };
    if (paths.srt) this.srt = new SubtitleFileWriter(paths.srt, 'srt', options, lines.style);
    if (paths.vtt) this.vtt = new SubtitleFileWriter(paths.vtt, 'vtt', options, lines.style);
    if (paths.jsonl) this.jsonl = new JsonlWriter(paths.jsonl, { stdout });
    if (paths.burnIn) {
      this.burnCues = [];
      this.burnSegmenter = createSegmenter(lines.style, options);
    }
  }

  /** Opens the MQTT and YouTube outputs asked for. */
  async openFeeds(feeds: CaptionFeeds, stream: string, logger: Logger): Promise<void> {
    const outputs: OutputsConfig = { youtube: feeds.youtube ? [{ stream, url: feeds.youtube, clockOffsetMs: 0, minIntervalMs: 1000 }] : [] };
    if (feeds.mqtt) outputs.mqtt = { url: feeds.mqtt, topicPrefix: MQTT_DEFAULTS.topicPrefix, qos: MQTT_DEFAULTS.qos, tokens: false };
    this.feeds = new SinkFanout(logger);
    await this.feeds.apply('', configuredOutputs(outputs, logger));
  }

  /** Every event goes to the feeds. */
  event(ev: StreamEvent): void {
    this.feeds?.publish(ev);
  }

  /** Sends what the feeds still hold (a few seconds at most) and disconnects them. */
  async closeFeeds(): Promise<void> {
    await this.feeds?.close();
  }

  caption(ev: CaptionEvent): void {
    this.streamEnd = ev.end;
    this.srt?.caption(ev);
    this.vtt?.caption(ev);
    if (this.burnSegmenter) this.burnCues?.push(...this.burnSegmenter.push(ev));
  }

  /** Finishes every file with what it has (synchronous: a signal handler calls it). Idempotent. */
  close(): void {
    const closers = [() => this.srt?.close(this.streamEnd), () => this.vtt?.close(this.streamEnd), () => this.jsonl?.close()];
    for (const close of closers) {
      try {
        close();
      } catch {
        /* best effort: the files hold every complete cue / line written so far */
      }
    }
    if (this.burnSegmenter && this.burnCues) {
      this.burnCues.push(...this.burnSegmenter.flush(this.streamEnd));
      this.burnSegmenter = undefined;
    }
  }

  /** "c.srt (12 cues)", … for the summary (JSONL on stdout is not a file written). */
  written(): string[] {
    const written: string[] = [];
    if (this.srt) written.push(`${rel(this.srt.path)} (${this.srt.cues} cues)`);
    if (this.vtt) written.push(`${rel(this.vtt.path)} (${this.vtt.cues} cues)`);
    if (this.jsonl && this.jsonl.target !== '-') written.push(`${rel(this.jsonl.target)} (${this.jsonl.lines} events)`);
    return written;
  }
}

// ------------------------------------------------------------------ interrupts

/**
 * The run's lifecycle as signals see it. `starting` (the model loads): a signal finishes the
 * files and exits 130 at once. `running`: the first Ctrl-C / SIGTERM stops the pipeline,
 * letting the frame in hand finish for GRACE_MS → `stopping`, where another signal quits at once.
 * A reader of stdout going away (EPIPE) cuts the run quietly.
 */
class RunControl {
  private state: 'starting' | 'running' | 'stopping' = 'starting';
  private pipeline: CaptionPipelineHandle | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  /** Aborts a burn-in in progress on Ctrl-C. */
  readonly burnAbort = new AbortController();

  constructor(
    private readonly display: CaptionDisplay,
    private readonly outputs: CaptionOutputs,
    private readonly io: CliIo,
  ) {}

  get interrupted(): boolean {
    return this.state === 'stopping';
  }

  install(): void {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    releaseEarlySignals();
    this.io.stdout.on('error', this.onStdoutError);
  }

  running(pipeline: CaptionPipelineHandle): void {
    this.pipeline = pipeline;
    this.state = 'running';
  }

  /** The events have ended: no grace period to run out any more. */
  ended(): void {
    if (this.graceTimer) clearTimeout(this.graceTimer);
  }

  /** Removes the handlers and cuts the pipeline if it still runs. */
  async uninstall(): Promise<void> {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    this.io.stdout.off('error', this.onStdoutError);
    await this.pipeline?.stop({ immediate: true }).catch(() => undefined);
  }

  private readonly onSignal = (): void => {
    if (this.state !== 'running' || !this.pipeline) {
      // Second Ctrl-C, or nothing is running yet (the model is loading): finish the files as
      // they are and leave now (children are SIGKILLed on exit).
      this.outputs.close();
      this.display.close();
      this.io.stderr.write('casa-live: interrupted\n');
      process.exit(130);
    }
    this.state = 'stopping';
    this.display.info('stopping… (Ctrl-C again to quit at once)');
    this.burnAbort.abort();
    const pipeline = this.pipeline;
    void pipeline.stop();
    this.graceTimer = setTimeout(() => void pipeline.stop({ immediate: true }), GRACE_MS);
    this.graceTimer.unref();
  };

  private readonly onStdoutError = (err: NodeJS.ErrnoException): void => {
    // The reader went away (e.g. `| head`): stop quietly.
    if (err.code === 'EPIPE') {
      this.display.mute();
      void this.pipeline?.stop({ immediate: true });
    }
  };
}

// ------------------------------------------------------------------ the run

export async function runCaption(args: CaptionArgs, io: CliIo): Promise<number> {
  const plan = resolveCaptionPlan(args, io.env);
  const display = createDisplay(plan, io);
  const logger = cliLogger(plan.logLevel);
  const outputs = new CaptionOutputs();
  const control = new RunControl(display, outputs, io);
  control.install();
  let model: CaptionModel | undefined;
  const started = Date.now();
  try {
    display.statusLine(`loading model ${plan.modelDir}…`);
    logger.info({ model: plan.modelDir }, 'loading model');
    model = await loadModelRef(plan.modelDir, { worker: { logger }, ...(plan.batched ? {} : { batch: false }) }, io.env);
    logger.info({ model: plan.modelDir, runtime: model.runtime, ...(model instanceof Model ? { engine: model.engine } : {}) }, 'model loaded');
    if (control.interrupted) throw new ExitRequest(130);
    return await captionWith(model, plan, { display, outputs, control, logger, io, started });
  } catch (err) {
    display.close();
    return exitCodeOfStop(err, io.stderr);
  } finally {
    outputs.close();
    await outputs.closeFeeds();
    await control.uninstall();
    await model?.release().catch(() => undefined);
  }
}

/** An interruption ends with 130 and one line; any other error goes on to the CLI's handler. */
function exitCodeOfStop(err: unknown, stderr: NodeJS.WriteStream): number {
  if (err instanceof ExitRequest) {
    if (err.code === 130) stderr.write('casa-live: interrupted\n');
    return err.code;
  }
  if (err instanceof CasaLiveError && err.kind === 'interrupted') {
    stderr.write(`casa-live: ${err.message}\n`);
    return 130;
  }
  throw err;
}

interface RunParts {
  display: CaptionDisplay;
  outputs: CaptionOutputs;
  control: RunControl;
  logger: Logger;
  io: CliIo;
  /** When the command started (before the model loaded): the summary's elapsed time. */
  started: number;
}

/** What the event loop counted. */
interface Tally {
  captions: number;
  /** End of the last captioned frame (stream seconds). */
  lastCaptionEnd?: number;
  /** Caption text per frame, kept only to score the demo against its ground truth. */
  texts: Map<number, string>;
}

/** The model is loaded: open the outputs, caption the input, summarise, burn in. Resolves with the exit code. */
async function captionWith(model: CaptionModel, plan: CaptionPlan, parts: RunParts): Promise<number> {
  const { display, outputs, control, logger, io, started } = parts;
  const runFps = plan.fps ?? model.fps;
  let ffmpegPath: string | undefined;
  if (plan.outputs.burnIn !== undefined) {
    ffmpegPath = (await resolveFfmpeg({ logger })).ffmpegPath;
    await assertCanBurnIn(ffmpegPath);
  }
  outputs.open(plan.outputs, { lineLength: plan.lineLength, style: plan.subtitleStyle }, io.stdout);
  await outputs.openFeeds(plan.feeds, plan.streamId, logger);
  display.note(
    `captioning ${plan.classified.display} with ${model.name} (${model.fusion}, ${model.image.width}x${model.image.height}, ${runFps} fps${plan.maxFrames ? `, at most ${plan.maxFrames} frames` : ''})`,
  );
  const p = createCaptionPipeline({
    model,
    input: plan.input,
    fps: runFps,
    generation: plan.generation,
    logger,
    ...(plan.realtime ? { realtime: true } : {}),
    ...(plan.maxFrames !== undefined ? { maxFrames: plan.maxFrames } : {}),
    ...(plan.fit !== undefined ? { fit: plan.fit } : {}),
    source: sourceRetryOptions(plan),
  });
  control.running(p);
  const tally = await consumeEvents(p, plan, parts, runFps);
  const stats = p.stats();
  printSummary(display, outputs, tally, stats, (Date.now() - started) / 1000, control.interrupted);
  if (plan.truthFile && !control.interrupted) {
    const score = scoreAgainstTruth(plan.truthFile, tally.texts, runFps);
    if (score) display.summary(score);
  }
  if (control.interrupted) {
    display.close();
    io.stderr.write('casa-live: interrupted; the files written so far are complete\n');
    return 130;
  }
  if (plan.outputs.burnIn && ffmpegPath && outputs.burnCues) {
    const fullRun = plan.maxFrames === undefined || stats.framesCaptioned < plan.maxFrames;
    await burnInCaptions(p, plan.classified.path as string, plan.outputs.burnIn, outputs.burnCues, {
      ffmpegPath,
      display,
      signal: control.burnAbort.signal,
      ...(!fullRun && tally.lastCaptionEnd !== undefined ? { cutAt: tally.lastCaptionEnd } : {}),
    });
  }
  display.close();
  return 0;
}

/**
 * --retries / --retry-timeout as the ingest's retry policy: a first connection that gives no
 * frame within the limit ends the run (exit 3), so no single attempt may wait longer either.
 */
function sourceRetryOptions(plan: CaptionPlan): NonNullable<CaptionPipelineOptions['source']> {
  if (!isLiveKind(plan.classified.kind)) return {};
  const deadline = plan.retry.firstFrameDeadlineMs;
  return {
    reconnect: { ...plan.retry },
    ...(deadline !== undefined ? { connectTimeoutMs: Math.min(SOURCE_DEFAULTS.connectTimeoutMs, deadline) } : {}),
  };
}

/**
 * The event loop: every event stamped with the stream id and its sequence number, written
 * to the outputs and shown, with a progress line redrawn meanwhile. On a failure the files
 * are finished and the error rethrown.
 */
async function consumeEvents(p: CaptionPipelineHandle, plan: CaptionPlan, parts: RunParts, runFps: number): Promise<Tally> {
  const { display, outputs, control, started } = parts;
  const tally: Tally = { captions: 0, texts: new Map() };
  const progress = startProgress(p, plan, display, runFps, started, () => tally.lastCaptionEnd ?? 0);
  let seq = 0;
  let failure: unknown;
  try {
    for await (const raw of p.events) {
      const ev: StreamEvent = stampEvent(raw, plan.streamId, ++seq);
      outputs.jsonl?.write(ev);
      outputs.event(ev);
      if (ev.type === 'token') display.token(ev);
      else if (ev.type === 'caption') {
        tally.captions++;
        tally.lastCaptionEnd = ev.end;
        if (plan.truthFile) tally.texts.set(ev.frame, ev.text);
        outputs.caption(ev);
        display.caption(ev);
        progress.show();
      } else display.status(ev);
    }
  } catch (err) {
    failure = err;
  } finally {
    progress.stop();
    control.ended();
    outputs.close();
  }
  if (failure !== undefined) {
    display.close();
    throw failure;
  }
  return tally;
}

/** The progress line, redrawn every 250 ms; files know their length once ffprobe has said it. */
function startProgress(
  p: CaptionPipelineHandle,
  plan: CaptionPlan,
  display: CaptionDisplay,
  runFps: number,
  started: number,
  streamSeconds: () => number,
): { show: () => void; stop: () => void } {
  const kind = plan.classified.kind;
  const live = kind === 'live' || kind === 'device' || kind === 'stdin';
  let total: number | undefined = plan.maxFrames;
  if (!live) {
    void p.durationSeconds().then((d) => {
      if (d === undefined) return;
      const est = Math.max(1, Math.round(d * runFps));
      total = plan.maxFrames !== undefined ? Math.min(plan.maxFrames, est) : est;
    });
  }
  const show = (): void => {
    const s = p.stats();
    display.progress({
      frames: s.framesCaptioned,
      ...(total !== undefined ? { total: Math.max(total, s.framesCaptioned) } : {}),
      elapsedMs: Date.now() - started,
      streamSeconds: streamSeconds(),
      dropped: s.framesDropped,
      lagMs: s.lagMs,
      live,
    });
  };
  const timer = setInterval(show, 250);
  timer.unref();
  return { show, stop: () => clearInterval(timer) };
}

/** "done: 12 frames in 3.1 s (…)" and the files written. */
function printSummary(
  display: CaptionDisplay,
  outputs: CaptionOutputs,
  tally: Tally,
  stats: { framesCaptioned: number; framesDropped: number },
  elapsed: number,
  interrupted: boolean,
): void {
  const frames = stats.framesCaptioned;
  const rate = elapsed > 0 ? frames / elapsed : 0;
  const rtf = elapsed > 0 ? (tally.lastCaptionEnd ?? 0) / elapsed : 0;
  display.summary(
    `${interrupted ? 'interrupted after' : 'done:'} ${frames} frame${frames === 1 ? '' : 's'} in ${formatDuration(elapsed)} ` +
      `(${rate.toFixed(1)} frames/s, ${rtf.toFixed(1)}× real time, ${stats.framesDropped} dropped); ${tally.captions} captions`,
  );
  const written = outputs.written();
  if (written.length) display.summary(`wrote ${written.join(', ')}`);
}

/** Writes a copy of the input with the cues rendered in (up to `cutAt` seconds when the run stopped early). */
async function burnInCaptions(
  p: CaptionPipelineHandle,
  input: string,
  output: string,
  cues: Cue[],
  opts: { ffmpegPath: string; display: CaptionDisplay; signal: AbortSignal; cutAt?: number },
): Promise<void> {
  const { display } = opts;
  const duration = await p.durationSeconds();
  display.statusLine('burning in the captions…');
  await burnIn({
    ffmpegPath: opts.ffmpegPath,
    input,
    output,
    cues,
    ...(opts.cutAt !== undefined ? { durationSeconds: opts.cutAt } : {}),
    ...(duration !== undefined ? { expectedSeconds: duration } : {}),
    signal: opts.signal,
    onProgress: (f) => display.statusLine(`burning in the captions… ${Math.round(f * 100)}%`),
  });
  display.summary(`wrote ${rel(output)} (${cues.length} cues burned in)`);
}

function rel(file: string): string {
  const r = path.relative(process.cwd(), file);
  return r.startsWith('..') || path.isAbsolute(r) ? file : r;
}

/** "demo: 104/120 frames match the ground truth exactly (86.7%)", from a clip's truth JSON. */
export function scoreAgainstTruth(truthFile: string, texts: Map<number, string>, fps: number): string | undefined {
  let truth: { captions?: unknown; fps?: unknown };
  try {
    truth = JSON.parse(readFileSync(truthFile, 'utf8')) as typeof truth;
  } catch {
    return undefined;
  }
  if (!Array.isArray(truth.captions) || (typeof truth.fps === 'number' && Math.abs(truth.fps - fps) > 1e-9)) return undefined;
  const captions = truth.captions as unknown[];
  let n = 0;
  let ok = 0;
  for (const [frame, text] of texts) {
    const want = captions[frame];
    if (typeof want !== 'string') continue;
    n++;
    if (normalise(want) === normalise(text)) ok++;
  }
  if (n === 0) return undefined;
  return `ground truth: ${ok}/${n} frames captioned exactly right (${((100 * ok) / n).toFixed(1)}%)`;
}

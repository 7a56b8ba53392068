/**
 * `casa-live caption <input>`: one stream, captions shown live, optional SRT / WebVTT /
 * JSONL / burned-in video outputs (docs/cli.md).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { CaptionModel } from '../engine.js';
import { CasaLiveError, InputError, UsageError } from '../errors.js';
import { STREAM_ID_RE, STREAM_ID_RULE, stampEvent, type StreamEvent, type UnsequencedEvent } from '../events.js';
import { FIT_MODES, FileNotFoundError, classifyInput, resolveFfmpeg, type Fit } from '../ingest/index.js';
import { createCaptionPipeline, type CaptionPipelineHandle } from '../pipeline/pipeline.js';
import { embeddedModelDir, loadModelRef, packageRoot, resolveModelRef } from '../pipeline/models.js';
import { assertCanBurnIn, burnIn } from '../sinks/burn-in.js';
import { JsonlWriter } from '../sinks/jsonl.js';
import { SubtitleSegmenter, normalise, type Cue } from '../sinks/segmenter.js';
import { SubtitleFileWriter } from '../sinks/subtitles.js';
import { CaptionDisplay, formatDuration, type DisplayMode } from './display.js';
import {
  ExitRequest,
  checkOutputFile,
  cliLogger,
  logLevelOption,
  nonNegativeNumber,
  positiveInt,
  positiveNumber,
  seedValue,
} from './common.js';
import { releaseEarlySignals } from './signals.js';

export interface CaptionArgs {
  input?: string;
  demo?: boolean;
  model?: string;
  fps?: number;
  realtime?: boolean;
  maxFrames?: number;
  seed?: number;
  temperature?: number;
  maxTokens?: number;
  /** End a frame's text when its 1/fps budget is spent (live pacing). */
  realtimeDeadline?: boolean;
  /** The stream's instruction, for models that take one (hf: worker models). */
  prompt?: string;
  srt?: string;
  vtt?: string;
  jsonl?: string;
  burnIn?: string;
  quiet?: boolean;
  lineLength?: number;
  fit?: string;
  streamId?: string;
  logLevel?: string;
}

export interface CaptionIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

/** Containers ffmpeg picks from the --burn-in file name (with a video encoder by default). */
const BURN_IN_EXTENSIONS = ['.mp4', '.m4v', '.mkv', '.mov', '.webm', '.avi', '.ts'];
/** After Ctrl-C the frame in hand may finish for this long; then it is cut. */
const GRACE_MS = 500;

export function demoPaths(): { video: string; truth: string } {
  const dir = path.join(packageRoot(), 'examples');
  return { video: path.join(dir, 'demo.mp4'), truth: path.join(dir, 'demo.json') };
}

function defaultStreamId(input: string, kind: string): string {
  if (kind === 'file') {
    const base = path.basename(input, path.extname(input)).replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^[-_]+/, '').slice(0, 64);
    if (STREAM_ID_RE.test(base)) return base;
  }
  return 'main';
}

interface Outputs {
  srt?: SubtitleFileWriter;
  vtt?: SubtitleFileWriter;
  jsonl?: JsonlWriter;
  burnCues?: Cue[];
  burnSegmenter?: SubtitleSegmenter;
  /** End of the last captioned frame. */
  streamEnd?: number;
}

function closeOutputs(o: Outputs): void {
  const closers = [() => o.srt?.close(o.streamEnd), () => o.vtt?.close(o.streamEnd), () => o.jsonl?.close()];
  for (const close of closers) {
    try {
      close();
    } catch {
      /* best effort: the files hold every complete cue / line written so far */
    }
  }
  if (o.burnSegmenter && o.burnCues) {
    o.burnCues.push(...o.burnSegmenter.flush(o.streamEnd));
    o.burnSegmenter = undefined;
  }
}

export async function runCaption(args: CaptionArgs, io: CaptionIo): Promise<number> {
  // ---------------------------------------------------------------- arguments
  let input = args.input;
  const demo = args.demo === true;
  if (demo && input !== undefined) throw new UsageError('Give either an input or --demo, not both.');
  let truthFile: string | undefined;
  if (demo) {
    const d = demoPaths();
    if (!existsSync(d.video)) {
      throw new InputError(`The demo clip ${d.video} is not installed; build it with "npm run model:build" or caption a file of your own.`);
    }
    input = d.video;
    if (existsSync(d.truth)) truthFile = d.truth;
  }
  if (input === undefined || input === '') throw new UsageError('Name an input (a file, URL, /dev/videoN or -), or use --demo.');
  const classified = classifyInput(input);
  const fps = positiveNumber(args.fps, '--fps', 30);
  const maxFrames = positiveInt(args.maxFrames, '--max-frames');
  const seed = seedValue(args.seed);
  const temperature = nonNegativeNumber(args.temperature, '--temperature', 10);
  const maxTokens = positiveInt(args.maxTokens, '--max-tokens', 4096);
  const lineLength = positiveInt(args.lineLength, '--line-length', 200) ?? 42;
  if (lineLength < 8) throw new UsageError(`--line-length must be at least 8, not ${lineLength}.`);
  if (args.fit !== undefined && !(FIT_MODES as readonly string[]).includes(args.fit)) {
    throw new UsageError(`--fit must be one of ${FIT_MODES.join(', ')}, not "${args.fit}".`);
  }
  const streamId = args.streamId ?? defaultStreamId(input, classified.kind);
  if (!STREAM_ID_RE.test(streamId)) {
    throw new UsageError(`--stream-id must be ${STREAM_ID_RULE}, not "${streamId}".`);
  }
  const logLevel = logLevelOption(args.logLevel);
  const outPaths = new Map<string, string>();
  const out = (file: string | undefined, flag: string): string | undefined => {
    if (file === undefined) return undefined;
    if (flag === '--jsonl' && file === '-') return '-';
    const abs = checkOutputFile(file, flag);
    const other = outPaths.get(abs);
    if (other) throw new UsageError(`${flag} and ${other} name the same file ${file}.`);
    if (classified.kind === 'file' && classified.path === abs) throw new UsageError(`${flag} ${file} would overwrite the input.`);
    outPaths.set(abs, flag);
    return abs;
  };
  const srtPath = out(args.srt, '--srt');
  const vttPath = out(args.vtt, '--vtt');
  const jsonlTarget = out(args.jsonl, '--jsonl');
  const burnPath = out(args.burnIn, '--burn-in');
  if (burnPath !== undefined && classified.kind !== 'file') {
    throw new UsageError('--burn-in needs a video file as input (it re-reads the input after captioning).');
  }
  if (burnPath !== undefined && !BURN_IN_EXTENSIONS.includes(path.extname(burnPath).toLowerCase())) {
    throw new UsageError(`--burn-in ${args.burnIn}: the file name must end in ${BURN_IN_EXTENSIONS.join(', ')} (it picks the container).`);
  }
  if (classified.kind === 'file' && classified.path && !existsSync(classified.path)) {
    throw new FileNotFoundError(classified.display);
  }
  const modelDir = args.model !== undefined ? resolveModelRef(args.model, process.cwd(), io.env) : embeddedModelDir(io.env);

  // ---------------------------------------------------------------- display
  const jsonlToStdout = jsonlTarget === '-';
  let mode: DisplayMode;
  let displayOut: NodeJS.WriteStream = io.stdout;
  if (args.quiet) mode = 'off';
  else if (jsonlToStdout) {
    mode = io.stderr.isTTY ? 'tty' : 'off';
    displayOut = io.stderr;
  } else mode = io.stdout.isTTY ? 'tty' : 'plain';
  const color = mode === 'tty' && io.env.NO_COLOR === undefined && io.env.TERM !== 'dumb';
  const display = new CaptionDisplay({ mode, out: displayOut, err: io.stderr, color });
  const logger = cliLogger(logLevel);

  // ---------------------------------------------------------------- interrupts
  let interrupted = false;
  let pipeline: CaptionPipelineHandle | undefined;
  const outputs: Outputs = {};
  const burnAbort = new AbortController();
  let graceTimer: NodeJS.Timeout | undefined;
  const onSignal = (): void => {
    if (interrupted || !pipeline) {
      // Second Ctrl-C, or nothing is running yet (the model is loading): finish the files as
      // they are and leave now (children are SIGKILLed on exit).
      closeOutputs(outputs);
      display.close();
      io.stderr.write('casa-live: interrupted\n');
      process.exit(130);
    }
    interrupted = true;
    display.info('stopping… (Ctrl-C again to quit at once)');
    burnAbort.abort();
    void pipeline.stop();
    graceTimer = setTimeout(() => void pipeline?.stop({ immediate: true }), GRACE_MS);
    graceTimer.unref();
  };
  const onStdoutError = (err: NodeJS.ErrnoException): void => {
    // The reader went away (e.g. `| head`): stop quietly.
    if (err.code === 'EPIPE') {
      display.mute();
      void pipeline?.stop({ immediate: true });
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  releaseEarlySignals();
  io.stdout.on('error', onStdoutError);

  let model: CaptionModel | undefined;
  const started = Date.now();
  try {
    // -------------------------------------------------------------- model
    display.statusLine(`loading model ${modelDir}…`);
    logger.info({ model: modelDir }, 'loading model');
    model = await loadModelRef(modelDir, { worker: { logger } }, io.env);
    if (interrupted) throw new ExitRequest(130);
    const runFps = fps ?? model.fps;
    let ffmpegPath: string | undefined;
    if (burnPath !== undefined) {
      ffmpegPath = (await resolveFfmpeg({ logger })).ffmpegPath;
      await assertCanBurnIn(ffmpegPath);
    }

    // -------------------------------------------------------------- outputs
    if (srtPath) outputs.srt = new SubtitleFileWriter(srtPath, 'srt', { maxLineChars: lineLength });
    if (vttPath) outputs.vtt = new SubtitleFileWriter(vttPath, 'vtt', { maxLineChars: lineLength });
    if (jsonlTarget) outputs.jsonl = new JsonlWriter(jsonlTarget, { stdout: io.stdout });
    if (burnPath) {
      outputs.burnCues = [];
      outputs.burnSegmenter = new SubtitleSegmenter({ maxLineChars: lineLength });
    }

    display.note(
      `captioning ${classified.display} with ${model.name} (${model.fusion}, ${model.image.width}x${model.image.height}, ${runFps} fps${maxFrames ? `, at most ${maxFrames} frames` : ''})`,
    );

    // -------------------------------------------------------------- run
    const generation = {
      ...(seed !== undefined ? { seed } : {}),
      ...(temperature !== undefined ? { temperature } : {}),
      ...(maxTokens !== undefined ? { maxNewTokensPerFrame: maxTokens } : {}),
      ...(args.realtimeDeadline ? { realtimeDeadline: true } : {}),
      ...(args.prompt !== undefined ? { prompt: args.prompt } : {}),
    };
    const p = createCaptionPipeline({
      model,
      input,
      fps: runFps,
      generation,
      logger,
      ...(args.realtime ? { realtime: true } : {}),
      ...(maxFrames !== undefined ? { maxFrames } : {}),
      ...(args.fit !== undefined ? { fit: args.fit as Fit } : {}),
    });
    pipeline = p;

    const live = classified.kind === 'live' || classified.kind === 'device' || classified.kind === 'stdin';
    let total: number | undefined = maxFrames;
    if (!live) {
      void p.durationSeconds().then((d) => {
        if (d === undefined) return;
        const est = Math.max(1, Math.round(d * runFps));
        total = maxFrames !== undefined ? Math.min(maxFrames, est) : est;
      });
    }
    let seq = 0;
    let captions = 0;
    let lastEnd = 0;
    let lastCaptionEnd: number | undefined;
    const texts = new Map<number, string>();
    const showProgress = (): void => {
      const s = p.stats();
      display.progress({
        frames: s.framesCaptioned,
        ...(total !== undefined ? { total: Math.max(total, s.framesCaptioned) } : {}),
        elapsedMs: Date.now() - started,
        streamSeconds: lastEnd,
        dropped: s.framesDropped,
        lagMs: s.lagMs,
        live,
      });
    };
    const progressTimer = setInterval(showProgress, 250);
    progressTimer.unref();

    const stamp = (ev: UnsequencedEvent): StreamEvent => stampEvent(ev, streamId, ++seq);
    let failure: unknown;
    try {
      for await (const raw of p.events) {
        const ev = stamp(raw);
        outputs.jsonl?.write(ev);
        if (ev.type === 'token') display.token(ev);
        else if (ev.type === 'caption') {
          captions++;
          lastEnd = ev.end;
          lastCaptionEnd = ev.end;
          outputs.streamEnd = ev.end;
          if (truthFile) texts.set(ev.frame, ev.text);
          outputs.srt?.caption(ev);
          outputs.vtt?.caption(ev);
          if (outputs.burnSegmenter) outputs.burnCues?.push(...outputs.burnSegmenter.push(ev));
          display.caption(ev);
          showProgress();
        } else display.status(ev);
      }
    } catch (err) {
      failure = err;
    } finally {
      clearInterval(progressTimer);
      if (graceTimer) clearTimeout(graceTimer);
      closeOutputs(outputs);
    }
    const stats = p.stats();
    const elapsed = (Date.now() - started) / 1000;
    if (failure !== undefined) {
      display.close();
      throw failure;
    }

    // -------------------------------------------------------------- summary
    const written: string[] = [];
    if (outputs.srt) written.push(`${rel(outputs.srt.path)} (${outputs.srt.cues} cues)`);
    if (outputs.vtt) written.push(`${rel(outputs.vtt.path)} (${outputs.vtt.cues} cues)`);
    if (outputs.jsonl && jsonlTarget !== '-') written.push(`${rel(outputs.jsonl.target)} (${outputs.jsonl.lines} events)`);
    const rate = elapsed > 0 ? stats.framesCaptioned / elapsed : 0;
    const rtf = elapsed > 0 ? lastEnd / elapsed : 0;
    display.summary(
      `${interrupted ? 'interrupted after' : 'done:'} ${stats.framesCaptioned} frame${stats.framesCaptioned === 1 ? '' : 's'} in ${formatDuration(elapsed)} ` +
        `(${rate.toFixed(1)} frames/s, ${rtf.toFixed(1)}× real time, ${stats.framesDropped} dropped); ${captions} captions`,
    );
    if (written.length) display.summary(`wrote ${written.join(', ')}`);
    if (truthFile && !interrupted) {
      const score = scoreAgainstTruth(truthFile, texts, runFps);
      if (score) display.summary(score);
    }
    if (interrupted) {
      display.close();
      io.stderr.write('casa-live: interrupted; the files written so far are complete\n');
      return 130;
    }

    // -------------------------------------------------------------- burn-in
    if (burnPath && ffmpegPath && outputs.burnCues) {
      const fullRun = maxFrames === undefined || stats.framesCaptioned < maxFrames;
      const duration = await p.durationSeconds();
      display.statusLine('burning in the captions…');
      await burnIn({
        ffmpegPath,
        input: classified.path as string,
        output: burnPath,
        cues: outputs.burnCues,
        ...(!fullRun && lastCaptionEnd !== undefined ? { durationSeconds: lastCaptionEnd } : {}),
        ...(duration !== undefined ? { expectedSeconds: duration } : {}),
        signal: burnAbort.signal,
        onProgress: (f) => display.statusLine(`burning in the captions… ${Math.round(f * 100)}%`),
      });
      display.summary(`wrote ${rel(burnPath)} (${outputs.burnCues.length} cues burned in)`);
    }
    display.close();
    return 0;
  } catch (err) {
    display.close();
    if (err instanceof ExitRequest) {
      if (err.code === 130) io.stderr.write('casa-live: interrupted\n');
      return err.code;
    }
    if (err instanceof CasaLiveError && err.kind === 'interrupted') {
      io.stderr.write(`casa-live: ${err.message}\n`);
      return 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    io.stdout.off('error', onStdoutError);
    closeOutputs(outputs);
    await pipeline?.stop({ immediate: true }).catch(() => undefined);
    await model?.release().catch(() => undefined);
  }
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

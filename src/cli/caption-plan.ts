/**
 * `casa-live caption`'s command line → a checked CaptionPlan: the input (or the demo clip),
 * every option's value, the output files. The first problem found is the usage error.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { SessionOptions } from '../engine.js';
import { InputError, UsageError } from '../errors.js';
import { STREAM_ID_RE, STREAM_ID_RULE } from '../events.js';
import { FileNotFoundError, classifyInput, redactUrl, type ClassifiedInput, type Fit } from '../ingest/index.js';
import { clip, type LogLevel } from '../logger.js';
import { packageRoot } from '../install.js';
import { embeddedModelDir, resolveModelRef } from '../pipeline/models.js';
import { HTTP_URL_RE, MQTT_URL_RE, MQTT_URL_RULE, SUBTITLE_STYLES, type SubtitleStyle } from '../config/schema.js';
import { checkOutputFile, fitOption, logLevelOption, nonNegativeNumber, oneOf, positiveInt, positiveNumber, seedValue } from './common.js';

export interface CaptionArgs {
  input?: string;
  demo?: boolean;
  model?: string;
  fps?: number;
  realtime?: boolean;
  maxFrames?: number;
  retries?: number;
  retryTimeout?: number;
  seed?: number;
  temperature?: number;
  maxTokens?: number;
  /** End a frame's text when its 1/fps budget is spent (live pacing). */
  realtimeDeadline?: boolean;
  /** Run an ONNX bundle on the batched engine (inference worker threads) instead of this thread. */
  batch?: boolean;
  /** The stream's instruction, for models that take one (hf: worker models). */
  prompt?: string;
  srt?: string;
  vtt?: string;
  jsonl?: string;
  burnIn?: string;
  mqtt?: string;
  youtube?: string;
  quiet?: boolean;
  lineLength?: number;
  subtitleStyle?: string;
  fit?: string;
  streamId?: string;
  logLevel?: string;
}

/** Containers ffmpeg picks from the --burn-in file name (with a video encoder by default). */
const BURN_IN_EXTENSIONS = ['.mp4', '.m4v', '.mkv', '.mov', '.webm', '.avi', '.ts'];

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

/** The output files asked for, as absolute paths (jsonl may be "-": stdout). */
export interface OutputPaths {
  srt?: string;
  vtt?: string;
  jsonl?: string;
  burnIn?: string;
}

/** Live inputs: how long the first connection may take before the run gives up (--retry-timeout). */
export const DEFAULT_RETRY_TIMEOUT_S = 30;

/** How a live input is retried (--retries, --retry-timeout): the ingest's retry policy settings. */
export interface RetryPlan {
  /** Failed attempts in a row before giving up (undefined: no limit). */
  maxRetries?: number;
  /** Give up when no frame came this long after the start (undefined: keep trying). */
  firstFrameDeadlineMs?: number;
}

/** A caption run as the command line asks for it, every option checked. */
export interface CaptionPlan {
  input: string;
  classified: ClassifiedInput;
  /** The demo clip's ground truth, to score the run against. */
  truthFile?: string;
  fps?: number;
  maxFrames?: number;
  retry: RetryPlan;
  generation: SessionOptions;
  lineLength: number;
  subtitleStyle: SubtitleStyle;
  fit?: Fit;
  streamId: string;
  logLevel: LogLevel;
  realtime: boolean;
  quiet: boolean;
  outputs: OutputPaths;
  /** Live outputs: an MQTT broker, a YouTube Live caption ingestion URL. */
  feeds: CaptionFeeds;
  modelDir: string;
  /**
   * The batched engine (inference worker threads) for an ONNX bundle; otherwise the stream's
   * graphs run on the main thread, the faster engine for one stream (docs/cli.md, --batch).
   */
  batched: boolean;
}

export interface CaptionFeeds {
  mqtt?: string;
  youtube?: string;
}

/**
 * --mqtt URL and --youtube URL (or env:NAME: the URL from that environment variable, which
 * keeps the ingestion key out of the process list).
 */
function resolveFeeds(args: CaptionArgs, env: NodeJS.ProcessEnv): CaptionFeeds {
  const feeds: CaptionFeeds = {};
  if (args.mqtt !== undefined) {
    if (!MQTT_URL_RE.test(args.mqtt)) throw new UsageError(`--mqtt must be ${MQTT_URL_RULE}, not "${clip(redactUrl(args.mqtt))}".`);
    feeds.mqtt = args.mqtt;
  }
  if (args.youtube !== undefined) {
    const name = /^env:(.+)$/.exec(args.youtube)?.[1];
    const url = name !== undefined ? env[name]?.trim() : args.youtube;
    if (!url && name !== undefined) throw new UsageError(`--youtube env:${clip(name)}: the environment variable ${clip(name)} is not set.`);
    if (!url || !HTTP_URL_RE.test(url)) throw new UsageError('--youtube must be the http(s) caption ingestion URL of the broadcast (or env:NAME).');
    feeds.youtube = url;
  }
  return feeds;
}

/** The input (or the demo clip, with its ground truth when installed). */
function resolveInput(args: CaptionArgs): { input: string; truthFile?: string } {
  if (args.demo !== true) {
    if (args.input === undefined || args.input === '') throw new UsageError('Name an input (a file, URL, /dev/videoN or -), or use --demo.');
    return { input: args.input };
  }
  if (args.input !== undefined) throw new UsageError('Give either an input or --demo, not both.');
  const d = demoPaths();
  if (!existsSync(d.video)) {
    throw new InputError(`The demo clip ${d.video} is not installed; build it with "npm run model:build" or caption a file of your own.`);
  }
  return { input: d.video, ...(existsSync(d.truth) ? { truthFile: d.truth } : {}) };
}

/** Checks the output files: writable, not the same file twice, not the input; --burn-in's own rules. */
function resolveOutputPaths(args: CaptionArgs, classified: ClassifiedInput): OutputPaths {
  const taken = new Map<string, string>();
  const out = (file: string | undefined, flag: string): string | undefined => {
    if (file === undefined) return undefined;
    if (flag === '--jsonl' && file === '-') return '-';
    const abs = checkOutputFile(file, flag);
    const other = taken.get(abs);
    if (other) throw new UsageError(`${flag} and ${other} name the same file ${file}.`);
    if (classified.kind === 'file' && classified.path === abs) throw new UsageError(`${flag} ${file} would overwrite the input.`);
    taken.set(abs, flag);
    return abs;
  };
  const paths: OutputPaths = { srt: out(args.srt, '--srt'), vtt: out(args.vtt, '--vtt'), jsonl: out(args.jsonl, '--jsonl'), burnIn: out(args.burnIn, '--burn-in') };
  if (paths.burnIn !== undefined && classified.kind !== 'file') {
    throw new UsageError('--burn-in needs a video file as input (it re-reads the input after captioning).');
  }
  if (paths.burnIn !== undefined && !BURN_IN_EXTENSIONS.includes(path.extname(paths.burnIn).toLowerCase())) {
    throw new UsageError(`--burn-in ${args.burnIn}: the file name must end in ${BURN_IN_EXTENSIONS.join(', ')} (it picks the container).`);
  }
  return paths;
}

/** --retries and --retry-timeout (seconds; 0 = no limit), with the default limit on the first connection. */
function retryPlan(args: CaptionArgs): RetryPlan {
  const retries = args.retries === 0 ? 0 : positiveInt(args.retries, '--retries');
  const timeoutS = nonNegativeNumber(args.retryTimeout, '--retry-timeout', 86_400) ?? DEFAULT_RETRY_TIMEOUT_S;
  return {
    ...(retries !== undefined ? { maxRetries: retries } : {}),
    ...(timeoutS > 0 ? { firstFrameDeadlineMs: timeoutS * 1000 } : {}),
  };
}

/** Checks every option, in the order the user reads them; the first problem is the usage error. */
export function resolveCaptionPlan(args: CaptionArgs, env: NodeJS.ProcessEnv): CaptionPlan {
  const { input, truthFile } = resolveInput(args);
  const classified = classifyInput(input);
  const fps = positiveNumber(args.fps, '--fps', 30);
  const maxFrames = positiveInt(args.maxFrames, '--max-frames');
  const retry = retryPlan(args);
  const seed = seedValue(args.seed);
  const temperature = nonNegativeNumber(args.temperature, '--temperature', 10);
  const maxTokens = positiveInt(args.maxTokens, '--max-tokens', 4096);
  const lineLength = positiveInt(args.lineLength, '--line-length', 200) ?? 42;
  if (lineLength < 8) throw new UsageError(`--line-length must be at least 8, not ${lineLength}.`);
  const subtitleStyle = oneOf(args.subtitleStyle, '--subtitle-style', SUBTITLE_STYLES) ?? 'block';
  const fit = fitOption(args.fit);
  const streamId = args.streamId ?? defaultStreamId(input, classified.kind);
  if (!STREAM_ID_RE.test(streamId)) {
    throw new UsageError(`--stream-id must be ${STREAM_ID_RULE}, not "${streamId}".`);
  }
  const logLevel = logLevelOption(args.logLevel);
  const outputs = resolveOutputPaths(args, classified);
  const feeds = resolveFeeds(args, env);
  if (classified.kind === 'file' && classified.path && !existsSync(classified.path)) {
    throw new FileNotFoundError(classified.display);
  }
  const modelDir = args.model !== undefined ? resolveModelRef(args.model, process.cwd(), env) : embeddedModelDir(env);
  return {
    input,
    classified,
    ...(truthFile !== undefined ? { truthFile } : {}),
    ...(fps !== undefined ? { fps } : {}),
    ...(maxFrames !== undefined ? { maxFrames } : {}),
    retry,
    generation: {
      ...(seed !== undefined ? { seed } : {}),
      ...(temperature !== undefined ? { temperature } : {}),
      ...(maxTokens !== undefined ? { maxNewTokensPerFrame: maxTokens } : {}),
      ...(args.realtimeDeadline ? { realtimeDeadline: true } : {}),
      ...(args.prompt !== undefined ? { prompt: args.prompt } : {}),
    },
    lineLength,
    subtitleStyle,
    ...(fit !== undefined ? { fit } : {}),
    streamId,
    logLevel,
    realtime: args.realtime === true,
    batched: args.batch === true,
    quiet: args.quiet === true,
    outputs,
    feeds,
    modelDir,
  };
}

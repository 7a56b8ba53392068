/** A frame source's options, defaulted and validated (UsageError for anything out of range). */
import type { Readable } from 'node:stream';
import { UsageError } from '../errors.js';
import { clip } from '../logger.js';
import type { ResolveFfmpegOptions } from './binaries.js';
import type { HlsOutputOptions } from './hls-output.js';
import { HWACCEL_RE, NICE_RANGE, SKIP_FRAME_MODES, type DecodeOptions } from './ffmpeg-args.js';
import { classifyInput, type ClassifiedInput } from './input.js';
import { RESTART_MODES, type RetrySettings } from './retry-policy.js';
import { FIT_MODES, type Fit, type IngestLogger, type SourceOptions } from './types.js';

export const DEFAULTS = {
  fit: 'letterbox' as Fit,
  fps: 2,
  stallTimeoutMs: 10_000,
  connectTimeoutMs: 20_000,
  ioTimeoutMs: 5_000,
  initialDelayMs: 500,
  maxDelayMs: 30_000,
};

export interface ResolvedSourceOptions {
  input: ClassifiedInput;
  width: number;
  height: number;
  fit: Fit;
  fps: number;
  realtime: boolean;
  rtspTransport: 'tcp' | 'udp';
  stallTimeoutMs: number;
  /** No first frame this long after ffmpeg started → the attempt failed (connect-timeout). */
  connectTimeoutMs: number;
  ioTimeoutMs: number;
  reconnect: RetrySettings;
  maxFrames: number | undefined;
  inputFormat: string | undefined;
  log: IngestLogger;
  /** The stream ffmpeg reads for input "-". */
  stdin: Readable | undefined;
  /** What resolveFfmpeg() is asked for. */
  binaries: ResolveFfmpegOptions;
  hls: HlsOutputOptions | undefined;
  decode: DecodeOptions | undefined;
}

const silentLogger: IngestLogger = { info() {}, warn() {}, error() {}, debug() {} };

/** Throws UnsupportedInputError / UsageError for a bad input or option, in the order of the fields. */
export function resolveSourceOptions(opts: SourceOptions): ResolvedSourceOptions {
  const input = classifyInput(opts.input);
  const width = positiveInt(opts.width, 'width', 16384);
  const height = positiveInt(opts.height, 'height', 16384);
  const fit = opts.fit ?? DEFAULTS.fit;
  if (!FIT_MODES.includes(fit)) throw new UsageError(`fit must be one of ${FIT_MODES.join(', ')}, not "${String(fit)}".`);
  const fps = opts.fps ?? DEFAULTS.fps;
  if (!(Number.isFinite(fps) && fps > 0 && fps <= 240)) {
    throw new UsageError(`fps must be a number above 0 and at most 240, not ${String(opts.fps)}.`);
  }
  const rtspTransport = opts.rtspTransport ?? 'tcp';
  if (rtspTransport !== 'tcp' && rtspTransport !== 'udp') {
    throw new UsageError(`rtspTransport must be tcp or udp, not "${String(opts.rtspTransport)}".`);
  }
  const stallTimeoutMs = positiveNumber(opts.stallTimeoutMs ?? DEFAULTS.stallTimeoutMs, 'stallTimeoutMs');
  const connectTimeoutMs = positiveNumber(opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs, 'connectTimeoutMs');
  const ioTimeoutMs = positiveNumber(opts.ioTimeoutMs ?? DEFAULTS.ioTimeoutMs, 'ioTimeoutMs');
  const reconnect = resolveReconnect(opts);
  const maxFrames = opts.maxFrames === undefined ? undefined : positiveInt(opts.maxFrames, 'maxFrames', Number.MAX_SAFE_INTEGER);
  const log = opts.logger ?? silentLogger;
  return {
    input,
    width,
    height,
    fit,
    fps,
    realtime: opts.realtime ?? false,
    rtspTransport,
    stallTimeoutMs,
    connectTimeoutMs,
    ioTimeoutMs,
    reconnect,
    maxFrames,
    inputFormat: opts.inputFormat,
    log,
    stdin: input.kind === 'stdin' ? (opts.stdin ?? process.stdin) : undefined,
    binaries: {
      ...(opts.ffmpegPath ? { ffmpegPath: opts.ffmpegPath } : {}),
      ...(opts.ffprobePath ? { ffprobePath: opts.ffprobePath } : {}),
      logger: log,
    },
    hls: opts.hls && resolveHls(opts.hls),
    decode: resolveDecode(opts.decode),
  };
}

function resolveHls(h: HlsOutputOptions): HlsOutputOptions {
  if (typeof h.dir !== 'string' || h.dir === '') throw new UsageError('hls.dir must name a directory.');
  if (!/^[a-z]+$/.test(h.preset)) throw new UsageError(`hls.preset must be an x264 preset, not "${clip(String(h.preset))}".`);
  positiveNumber(h.segmentSeconds, 'hls.segmentSeconds');
  positiveInt(h.listSize, 'hls.listSize', 1000);
  nonNegative(h.height, 'hls.height');
  return h;
}

function resolveDecode(d: DecodeOptions | undefined): DecodeOptions | undefined {
  if (!d) return undefined;
  if (d.threads !== undefined && !(Number.isInteger(d.threads) && d.threads >= 0 && d.threads <= 64)) {
    throw new UsageError(`decode.threads must be a whole number from 0 to 64, not ${String(d.threads)}.`);
  }
  if (d.skipFrame !== undefined && !SKIP_FRAME_MODES.includes(d.skipFrame)) {
    throw new UsageError(`decode.skipFrame must be one of ${SKIP_FRAME_MODES.join(', ')}, not "${String(d.skipFrame)}".`);
  }
  if (d.skipLoopFilter !== undefined && typeof d.skipLoopFilter !== 'boolean') {
    throw new UsageError(`decode.skipLoopFilter must be true or false, not ${clip(String(d.skipLoopFilter))}.`);
  }
  if (d.hwaccel !== undefined && !HWACCEL_RE.test(d.hwaccel)) {
    throw new UsageError(`decode.hwaccel must be an ffmpeg hwaccel name (lower-case letters, digits, _), not "${String(d.hwaccel)}".`);
  }
  if (d.nice !== undefined && !(Number.isInteger(d.nice) && d.nice >= NICE_RANGE.min && d.nice <= NICE_RANGE.max)) {
    throw new UsageError(`decode.nice must be a whole number from ${NICE_RANGE.min} to ${NICE_RANGE.max}, not ${clip(String(d.nice))}.`);
  }
  return d;
}

function resolveReconnect(opts: SourceOptions): RetrySettings {
  const r = opts.reconnect ?? {};
  const policy = r.policy ?? 'always';
  if (!RESTART_MODES.includes(policy)) throw new UsageError(`reconnect.policy must be one of ${RESTART_MODES.join(', ')}, not "${String(policy)}".`);
  const initialDelayMs = nonNegative(r.initialDelayMs ?? DEFAULTS.initialDelayMs, 'reconnect.initialDelayMs');
  const maxDelayMs = Math.max(initialDelayMs, nonNegative(r.maxDelayMs ?? DEFAULTS.maxDelayMs, 'reconnect.maxDelayMs'));
  const maxRetries = nonNegative(r.maxRetries ?? Infinity, 'reconnect.maxRetries');
  const deadline = r.firstFrameDeadlineMs === undefined ? undefined : positiveNumber(r.firstFrameDeadlineMs, 'reconnect.firstFrameDeadlineMs');
  return { policy, initialDelayMs, maxDelayMs, maxRetries, ...(deadline !== undefined ? { firstFrameDeadlineMs: deadline } : {}) };
}

/** The stall timeout in force: never shorter than two frame intervals plus a second, or a low fps would look stalled. */
export function effectiveStallMs(o: Pick<ResolvedSourceOptions, 'stallTimeoutMs' | 'fps'>): number {
  return Math.max(o.stallTimeoutMs, 2000 / o.fps + 1000);
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

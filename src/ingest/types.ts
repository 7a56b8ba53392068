import type { Readable } from 'node:stream';
import type { HlsOutputOptions } from './hls-output.js';
import type { StreamState } from '../events.js';
import type { DecodeOptions } from './ffmpeg-args.js';

/** One decoded, scaled frame, exactly as the model will see it. */
export interface Frame {
  /** 0, 1, 2, … over the life of the source (continues across reconnects). */
  index: number;
  /** Stream time in seconds from the start of the stream (see docs/ingest.md for reconnects). */
  ptsSeconds: number;
  /** Date.now() when the last byte of the frame came out of ffmpeg. */
  receivedAt: number;
  width: number;
  height: number;
  /** width * height * 3 bytes, packed RGB, row-major, top row first. */
  rgb: Buffer;
}

/**
 * How the picture is fitted into the model's width x height:
 * - fill: stretch to the size (aspect ratio not kept);
 * - crop: scale to cover the size, keeping the aspect ratio, and cut the centre out;
 * - letterbox: scale to fit inside the size, keeping the aspect ratio, black bars around.
 */
export const FIT_MODES = ['fill', 'crop', 'letterbox'] as const;
export type Fit = (typeof FIT_MODES)[number];

export type SourceKind = 'file' | 'live' | 'stdin' | 'device';

/** Live inputs and devices have no end: ffmpeg exiting there is a drop, and failures are retried. */
export function isLiveKind(kind: SourceKind): boolean {
  return kind === 'live' || kind === 'device';
}

/** pino-compatible logger (pino itself fits). */
export interface IngestLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/**
 * The source's retry policy (a stream's `restart` block fits it as it is). Every field is
 * optional; see retry-policy.ts for the rule.
 */
export interface ReconnectOptions {
  /** always / on-failure (default: both retry a live input's failures), never: fail at the first failure. */
  policy?: 'always' | 'on-failure' | 'never';
  /** First retry delay (default 500 ms). */
  initialDelayMs?: number;
  /** Cap of the exponential backoff (default 30 000 ms). */
  maxDelayMs?: number;
  /**
   * Consecutive failed attempts tolerated before the source gives up with the last error
   * (default Infinity for live inputs and devices; files and stdin never retry).
   */
  maxRetries?: number;
  /** Give up when no frame has come this long after the start (every attempt together; default: never). */
  firstFrameDeadlineMs?: number;
}

export interface SourceOptions {
  /** Path, URL (rtsp, rtsps, rtmp, rtmps, http, https, srt, udp, file), /dev/videoN or "-" for stdin. */
  input: string;
  /** Output size: the model's input size. */
  width: number;
  height: number;
  /** Default 'letterbox'. */
  fit?: Fit;
  /** Frames per second sampled from the stream (default 2). */
  fps?: number;
  /** Files and stdin: read at the stream's own speed (dropping frames the consumer cannot take) instead of as fast as the consumer pulls. */
  realtime?: boolean;
  /** RTSP lower transport (default 'tcp'). */
  rtspTransport?: 'tcp' | 'udp';
  /** No frame for this long after the attempt's first one → stalled: ffmpeg is SIGKILLed and the input reconnected (default 10 000 ms). */
  stallTimeoutMs?: number;
  /**
   * No first frame this long after ffmpeg started (connecting, probing, opening the decoder;
   * time waiting for a start slot does not count) → the attempt failed with connect-timeout
   * (default 20 000 ms).
   */
  connectTimeoutMs?: number;
  /** ffmpeg's own network I/O timeout (rtsp -timeout, other protocols -rw_timeout; default 5 000 ms). */
  ioTimeoutMs?: number;
  reconnect?: ReconnectOptions;
  /** ffmpeg / ffprobe binaries (else FFMPEG_PATH / FFPROBE_PATH, else PATH, else the bundled npm ones). */
  ffmpegPath?: string;
  ffprobePath?: string;
  logger?: IngestLogger;
  /** Stop (state 'ended') after delivering this many frames. */
  maxFrames?: number;
  /** Force ffmpeg's input format (-f), e.g. 'mjpeg' or 'h264' for raw streams on stdin. */
  inputFormat?: string;
  /** The stream read when input is "-" (default process.stdin). */
  stdin?: Readable;
  /** Also write the video as low-latency HLS (a second output of the same ffmpeg; hls-output.ts). */
  hls?: HlsOutputOptions;
  /** How ffmpeg decodes: threads per child, frames it may skip, a hardware decoder (src/ingest/ffmpeg-args.ts). */
  decode?: DecodeOptions;
}

export interface SourceStatus {
  state: StreamState;
  /** Why: the error message for 'reconnecting' and 'error', 'end of input' / 'stopped' / … for 'ended'. */
  reason?: string;
  /** Machine-readable cause for 'reconnecting' and 'error' (an IngestError code). */
  code?: string;
  /** For 'reconnecting': how long until the next attempt. */
  retryInMs?: number;
  /** For 'reconnecting': which retry of the current run of failures this is (1, 2, …). */
  retry?: number;
  /** For 'live': milliseconds from ffmpeg's start to the attempt's first frame (start-up time). */
  startupMs?: number;
  droppedFrames: number;
  reconnects: number;
}

export interface FrameSource {
  /**
   * The frames, pull-based. At most one finished frame waits for the consumer: a file waits for
   * it (backpressure), a live input replaces it with the newest frame and counts the drop.
   * Ends at end of input or stop(); throws the typed error when the source fails for good.
   * Leaving a for-await loop early (break, throw) stops the source.
   */
  frames(): AsyncIterable<Frame>;
  on(event: 'status', fn: (s: SourceStatus) => void): this;
  off(event: 'status', fn: (s: SourceStatus) => void): this;
  readonly droppedFrames: number;
  readonly reconnects: number;
  /** http(s) inputs start as 'live' and become 'file' when ffmpeg reports a finite duration (VOD). */
  readonly kind: SourceKind;
  readonly status: SourceStatus;
  /** Duration from ffprobe, for progress bars; undefined for live inputs, stdin and devices. */
  durationSeconds(): Promise<number | undefined>;
  /** Stops ingest; resolves when no ffmpeg/ffprobe child of this source remains. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Reading ffmpeg's stderr: frame timestamps (showinfo), the input's duration, and what went
 * wrong when it failed. Pure functions; tested against real ffmpeg output.
 */
import {
  ConnectionRefusedError,
  CorruptInputError,
  DeviceUnavailableError,
  DnsFailureError,
  FfmpegFailedError,
  FileNotFoundError,
  FileUnreadableError,
  ForbiddenError,
  IoTimeoutError,
  NoVideoStreamError,
  ProtocolUnavailableError,
  StreamDroppedError,
  StreamNotFoundError,
  UnauthorizedError,
  type IngestError,
} from './errors.js';
import { clip } from '../logger.js';
import { SHOWINFO_NAME } from './ffmpeg-args.js';
import type { ClassifiedInput } from './input.js';

const SHOWINFO_RE = new RegExp(
  `^\\[${SHOWINFO_NAME} @ [^\\]]*\\] n:\\s*\\d+\\s+pts:\\s*(\\S+)\\s+pts_time:(\\S+)`,
);
const SHOWINFO_ANY_RE = new RegExp(`^\\[${SHOWINFO_NAME} @ `);

/**
 * For a showinfo frame line: the frame's pts in seconds (NaN when the frame had none).
 * For other showinfo lines: null. For anything else: undefined.
 */
export function parseShowinfoLine(line: string): number | null | undefined {
  const m = SHOWINFO_RE.exec(line);
  if (m) {
    if (m[1] === 'NOPTS') return Number.NaN;
    const t = Number(m[2]);
    return Number.isFinite(t) ? t : Number.NaN;
  }
  return SHOWINFO_ANY_RE.test(line) ? null : undefined;
}

/**
 * For the "  Duration: 00:01:02.50, start: …" line of ffmpeg's input dump: the duration in
 * seconds, or null for "Duration: N/A" (a live stream). undefined for other lines.
 */
export function parseDurationLine(line: string): number | null | undefined {
  const m = /^\s+Duration: (N\/A|(\d+):(\d{2}):(\d{2}(?:\.\d+)?))/.exec(line);
  if (!m) return undefined;
  if (m[1] === 'N/A') return null;
  return Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4]);
}

/** Lines that say nothing about a failure (input dump, stream mapping, …). */
export function isNoiseLine(line: string): boolean {
  return (
    line.trim() === '' ||
    /^\s/.test(line) ||
    /^(Input|Output) #\d/.test(line) ||
    /^Stream mapping:/.test(line) ||
    /^Press \[q\]/.test(line) ||
    /^frame=\s*\d+/.test(line) ||
    /^video:\d+kB/.test(line)
  );
}

export interface FailureContext {
  input: ClassifiedInput;
  /** ffmpeg's last stderr lines (showinfo lines excluded), oldest first. */
  lines: string[];
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  ioTimeoutMs: number;
  ffmpegPath: string;
  /** Frames this ffmpeg run delivered. */
  frames: number;
}

/** "cam.local:554" (or "the server") for messages. */
export function endpointOf(input: ClassifiedInput): string {
  return `${input.host === undefined ? 'the server' : clip(input.host)}${input.port !== undefined ? `:${input.port}` : ''}`;
}

/** Turns a failed ffmpeg run (non-zero exit or a killing signal) into a typed error. */
export function classifyFailure(ctx: FailureContext): IngestError {
  const { input } = ctx;
  const shown = input.display;
  const details = ctx.lines.slice(-12);
  const opts = { details };
  const text = ctx.lines.join('\n');
  const has = (re: RegExp): boolean => re.test(text);
  const host = input.host === undefined ? undefined : clip(input.host);
  const endpoint = endpointOf(input);

  if (has(/Protocol not found/i)) {
    return new ProtocolUnavailableError(shown, input.scheme, ctx.ffmpegPath, opts);
  }
  if (input.kind === 'device') {
    if (has(/No such file or directory|No such device/i)) return new DeviceUnavailableError(shown, 'no such device', opts);
    if (has(/Device or resource busy/i)) return new DeviceUnavailableError(shown, 'busy', opts);
    if (has(/Permission denied/i)) return new DeviceUnavailableError(shown, 'permission denied', opts);
    if (has(/Cannot open video device|Inappropriate ioctl|Not a video capture device/i)) {
      return new DeviceUnavailableError(shown, lastMeaningful(ctx.lines) ?? 'ffmpeg cannot open it', opts);
    }
  }
  if (has(/\b401 Unauthorized\b|authorization failed/i)) return new UnauthorizedError(shown, opts);
  if (has(/\b403 Forbidden\b|access denied/i)) return new ForbiddenError(shown, opts);
  if (has(/\b404 Not Found\b/i)) return new StreamNotFoundError(shown, opts);
  if (has(/Failed to resolve hostname|Name or service not known|Temporary failure in name resolution|No address associated with hostname|nodename nor servname/i)) {
    return new DnsFailureError(shown, host ?? '(unknown)', opts);
  }
  if (has(/Connection refused/i)) return new ConnectionRefusedError(shown, endpoint, opts);
  if (input.scheme === 'srt' && has(/Connection to srt:\S* failed/i) && ctx.frames === 0) {
    // libsrt says only "Input/output error" when nobody answers the handshake.
    return new ConnectionRefusedError(shown, endpoint, opts);
  }
  if (has(/timed out|Connection timeout|ETIMEDOUT/i)) return new IoTimeoutError(shown, ctx.ioTimeoutMs / 1000, opts);
  if (has(/matches no streams|does not contain any stream|no video stream/i)) return new NoVideoStreamError(shown, opts);
  if (input.kind === 'file') {
    if (has(/No such file or directory/i)) return new FileNotFoundError(shown, opts);
    if (has(/Is a directory/i)) return new FileUnreadableError(shown, 'it is a directory', opts);
    if (has(/Permission denied/i)) return new FileUnreadableError(shown, 'permission denied', opts);
  }
  const corrupt = /moov atom not found|Invalid data found when processing input|could not find codec parameters|Invalid NAL unit|invalid frame|partial file|Error while decoding|corrupt|EBML header parsing failed|truncated|Failed to read frame size/i.exec(text);
  if (corrupt) {
    if (input.kind === 'live' && ctx.frames > 0) {
      return new StreamDroppedError(shown, `bad data from the server: ${corrupt[0]}`, opts);
    }
    return new CorruptInputError(shown, corrupt[0], opts);
  }
  if (input.kind === 'live' && has(/Connection reset by peer|Broken pipe|End of file|Input\/output error|Connection to \S+ failed/i)) {
    return new StreamDroppedError(shown, lastMeaningful(ctx.lines) ?? 'connection lost', opts);
  }
  const why = ctx.signal
    ? `it was killed by ${ctx.signal}`
    : (lastMeaningful(ctx.lines) ?? `it exited with code ${ctx.exitCode ?? 'unknown'}`);
  return new FfmpegFailedError(shown, why, opts);
}

/** The last stderr line that looks like a message, without ffmpeg's "[ctx @ 0x…] " prefix. */
export function lastMeaningful(lines: string[]): string | undefined {
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    if (isNoiseLine(line)) continue;
    if (/^(Conversion failed!|Exiting normally|To ignore this)/.test(line)) continue;
    return line.replace(/^\[[^\]]+ @ 0x[0-9a-f]+\]\s*/, '').trim().replace(/\.$/, '');
  }
  return undefined;
}

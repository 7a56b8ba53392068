/**
 * What kind of input a string names, and how ffmpeg is told to open it. Pure; no I/O.
 */
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clip } from '../logger.js';
import { UnsupportedInputError } from './errors.js';
import type { SourceKind } from './types.js';

/** URL schemes casa-live reads (plus plain paths, /dev/videoN and "-"). */
export const SUPPORTED_SCHEMES = ['file', 'rtsp', 'rtsps', 'rtmp', 'rtmps', 'http', 'https', 'srt', 'udp'] as const;
export type SupportedScheme = (typeof SUPPORTED_SCHEMES)[number];

export interface ClassifiedInput {
  /** The string as given. */
  raw: string;
  kind: SourceKind;
  /** 'file' for paths, 'stdin', 'v4l2', or the URL scheme. */
  scheme: SupportedScheme | 'stdin' | 'v4l2';
  /** What ffmpeg gets after -i ("file:/abs/path", the URL, "pipe:0", the device path). */
  ffmpegInput: string;
  /** For logs and messages: passwords and SRT passphrases replaced by ***, at most CLIP_CHARS long (clip()). */
  display: string;
  /** Absolute path for files and devices. */
  path?: string;
  host?: string;
  port?: number;
}

const SCHEME_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const DEVICE_RE = /^\/dev\/video\d+$/;
/** "rtsp:/host/x", "rtmp:host": a URL missing a slash, not a file name. */
const MALFORMED_URL_RE = /^(rtsps?|rtmps?|https?|srt|udp):\/?[^/]/i;
/** Listener forms ffmpeg takes but WHATWG URL does not parse (srt://:9000?mode=listener, udp://@:1234). */
const LISTENER_RE = /^(srt|udp):\/\/@?:\d+(\?\S*)?$/i;

export function supportedInputsText(): string {
  return `${SUPPORTED_SCHEMES.map((s) => `${s}://`).join(', ')}, a file path, /dev/videoN or - (stdin)`;
}

/** Throws UnsupportedInputError (a usage error) when casa-live cannot read `input`. */
export function validateInput(input: string): void {
  classifyInput(input);
}

export function classifyInput(input: string): ClassifiedInput {
  if (typeof input !== 'string' || input.trim() === '') {
    throw new UnsupportedInputError(String(input), `No input given; expected ${supportedInputsText()}.`);
  }
  if (input === '-') {
    return { raw: input, kind: 'stdin', scheme: 'stdin', ffmpegInput: 'pipe:0', display: 'stdin' };
  }
  if (DEVICE_RE.test(input)) {
    return { raw: input, kind: 'device', scheme: 'v4l2', ffmpegInput: input, display: clip(input), path: input };
  }
  const m = SCHEME_RE.exec(input);
  if (!m && MALFORMED_URL_RE.test(input)) {
    const scheme = input.split(':')[0]!.toLowerCase();
    throw new UnsupportedInputError(input, `Input ${shown(input)} is a malformed URL (expected ${clip(scheme)}://host/...).`);
  }
  if (!m) {
    // A plain path. "file:" is prefixed for ffmpeg so that a name with a colon is not read as a protocol.
    const path = resolve(input);
    return { raw: input, kind: 'file', scheme: 'file', ffmpegInput: `file:${path}`, display: clip(input), path };
  }
  const scheme = m[1]!.toLowerCase();
  if (!(SUPPORTED_SCHEMES as readonly string[]).includes(scheme)) {
    throw new UnsupportedInputError(
      input,
      `Input scheme "${clip(scheme)}://" is not supported; casa-live reads ${supportedInputsText()}.`,
    );
  }
  if (scheme === 'file') {
    let path: string;
    try {
      path = fileURLToPath(input);
    } catch (err) {
      throw new UnsupportedInputError(input, `Input ${clip(input)} is not a valid file:// URL (${clip((err as Error).message)}).`);
    }
    if (!isAbsolute(path)) path = resolve(path);
    return { raw: input, kind: 'file', scheme: 'file', ffmpegInput: `file:${path}`, display: clip(path), path };
  }
  if (LISTENER_RE.test(input)) {
    return { raw: input, kind: 'live', scheme: scheme as SupportedScheme, ffmpegInput: input, display: shown(input) };
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new UnsupportedInputError(input, `Input ${shown(input)} is not a valid ${scheme}:// URL.`);
  }
  // Non-special schemes keep the brackets of IPv6 hosts; ffmpeg wants them too.
  const host = url.hostname;
  if (host === '' && scheme !== 'udp') {
    throw new UnsupportedInputError(input, `Input ${shown(input)} has no host name.`);
  }
  const port = url.port === '' ? defaultPort(scheme) : Number(url.port);
  return {
    raw: input,
    kind: 'live',
    scheme: scheme as SupportedScheme,
    ffmpegInput: input,
    display: shown(input),
    host,
    ...(port !== undefined ? { port } : {}),
  };
}

/** How an input URL is shown in messages and logs: credentials redacted, length clipped. */
function shown(input: string): string {
  return clip(redactUrl(input));
}

function defaultPort(scheme: string): number | undefined {
  switch (scheme) {
    case 'rtsp':
      return 554;
    case 'rtsps':
      return 322;
    case 'rtmp':
      return 1935;
    case 'rtmps':
      return 443;
    case 'http':
      return 80;
    case 'https':
      return 443;
    default:
      return undefined;
  }
}

/** Replaces the password of a URL and any passphrase/password query parameter with ***. */
export function redactUrl(input: string): string {
  return input
    .replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/@:?#]*):[^/@?#]*@/, '$1:***@')
    .replace(/([?&](?:passphrase|password|pass|pwd|token|key)=)[^&#]*/gi, '$1***');
}

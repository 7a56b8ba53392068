/**
 * Stream input validation for config files.
 *
 * This is the one place where the daemon decides whether a stream `input` is acceptable.
 * It currently checks against a small allowlist of schemes; once src/ingest exports its
 * own `validateInput(input)`, this function should delegate to it so the CLI and the
 * daemon accept exactly the same inputs.
 */

/** URL schemes that ffmpeg ingest supports for live streams. */
export const SUPPORTED_SCHEMES = ['rtsp', 'rtsps', 'rtmp', 'rtmps', 'http', 'https', 'srt', 'udp', 'file'] as const;

/** Schemes whose URL must name a host (udp/srt listeners may not). */
const NEEDS_HOST = new Set(['rtsp', 'rtsps', 'rtmp', 'rtmps', 'http', 'https']);

export type InputKind = 'url' | 'file' | 'stdin' | 'v4l2';

export interface InputCheck {
  ok: boolean;
  kind?: InputKind;
  /** One-line reason when `ok` is false, e.g. `unsupported scheme "rtps"`. */
  problem?: string;
}

const SCHEME_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

/** Classifies and validates one stream input string. Never throws. */
export function validateStreamInput(input: string): InputCheck {
  if (input.trim() === '') return { ok: false, problem: 'must not be empty' };
  if (input !== input.trim()) return { ok: false, problem: 'must not start or end with whitespace' };
  if (input === '-') return { ok: true, kind: 'stdin' };
  if (/^\/dev\/video\d+$/.test(input)) return { ok: true, kind: 'v4l2' };
  const scheme = SCHEME_RE.exec(input)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (/^[A-Za-z][A-Za-z0-9+.-]*:\/?[^/]/.test(input) && /^(rtsp|rtsps|rtmp|rtmps|https?|srt|udp):/i.test(input)) {
      return { ok: false, problem: `malformed URL "${input}" (expected ${input.split(':')[0]}://host/...)` };
    }
    return { ok: true, kind: 'file' };
  }
  if (!(SUPPORTED_SCHEMES as readonly string[]).includes(scheme)) {
    return {
      ok: false,
      problem: `unsupported scheme "${scheme}" (supported: ${SUPPORTED_SCHEMES.join(', ')}, a file path, "-" or /dev/videoN)`,
    };
  }
  if (scheme === 'file') return { ok: true, kind: 'file' };
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    // Listener forms such as srt://:9000?mode=listener are valid for ffmpeg but not for WHATWG URL.
    if (!NEEDS_HOST.has(scheme) && /^[a-z]+:\/\/[^\s]*$/i.test(input)) return { ok: true, kind: 'url' };
    return { ok: false, problem: `malformed ${scheme} URL` };
  }
  if (NEEDS_HOST.has(scheme) && url.hostname === '') return { ok: false, problem: `${scheme} URL has no host` };
  return { ok: true, kind: 'url' };
}

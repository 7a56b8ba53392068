/**
 * Stream input validation for config files: the ingest's own classification
 * (src/ingest/input.ts), so that the CLI and the daemon accept exactly the same inputs,
 * worded as config problems (`unsupported scheme "rtps"`).
 */
import { UnsupportedInputError } from '../ingest/errors.js';
import { classifyInput, SUPPORTED_SCHEMES } from '../ingest/input.js';

export { SUPPORTED_SCHEMES };

export type InputKind = 'url' | 'file' | 'stdin' | 'v4l2';

export interface InputCheck {
  ok: boolean;
  kind?: InputKind;
  /** One-line reason when `ok` is false, e.g. `unsupported scheme "rtps"`. */
  problem?: string;
}

const SCHEME_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const KINDS = { live: 'url', file: 'file', stdin: 'stdin', device: 'v4l2' } as const;

/** Classifies and validates one stream input string. Never throws. */
export function validateStreamInput(input: string): InputCheck {
  if (input.trim() === '') return { ok: false, problem: 'must not be empty' };
  if (input !== input.trim()) return { ok: false, problem: 'must not start or end with whitespace' };
  const scheme = SCHEME_RE.exec(input)?.[1]?.toLowerCase();
  if (scheme !== undefined && !(SUPPORTED_SCHEMES as readonly string[]).includes(scheme)) {
    return {
      ok: false,
      problem: `unsupported scheme "${scheme}" (supported: ${SUPPORTED_SCHEMES.join(', ')}, a file path, "-" or /dev/videoN)`,
    };
  }
  try {
    return { ok: true, kind: KINDS[classifyInput(input).kind] };
  } catch (err) {
    if (!(err instanceof UnsupportedInputError)) throw err;
    // "Input X is a malformed URL (…)." → "input is a malformed URL (…)"
    return { ok: false, problem: err.message.replace(/^Input \S+ /, '').replace(/\.$/, '') };
  }
}

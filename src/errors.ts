/**
 * Typed errors. Every error that can reach a user carries a one-sentence message
 * (what went wrong and what to do) and the process exit code the CLI uses for it.
 */
export type ErrorKind = 'internal' | 'usage' | 'input' | 'model' | 'config' | 'interrupted';

export const EXIT_CODES: Record<ErrorKind, number> = {
  internal: 1,
  usage: 2,
  config: 2,
  input: 3,
  model: 4,
  interrupted: 130,
};

export class CasaLiveError extends Error {
  readonly kind: ErrorKind;
  /** Extra lines for the log (e.g. ffmpeg's last stderr lines), never shown as the message. */
  readonly details: string[];

  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown; details?: string[] }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.kind = kind;
    this.details = options?.details ?? [];
  }

  get exitCode(): number {
    return EXIT_CODES[this.kind];
  }
}

export class UsageError extends CasaLiveError {
  constructor(message: string, options?: { cause?: unknown; details?: string[] }) {
    super('usage', message, options);
  }
}

export class ConfigError extends CasaLiveError {
  constructor(message: string, options?: { cause?: unknown; details?: string[] }) {
    super('config', message, options);
  }
}

export class InputError extends CasaLiveError {
  constructor(message: string, options?: { cause?: unknown; details?: string[] }) {
    super('input', message, options);
  }
}

export class ModelError extends CasaLiveError {
  constructor(message: string, options?: { cause?: unknown; details?: string[] }) {
    super('model', message, options);
  }
}

export function exitCodeOf(error: unknown): number {
  return error instanceof CasaLiveError ? error.exitCode : EXIT_CODES.internal;
}

/** Shared pieces of the CLI commands: option checks, error reporting, exit codes. */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { CasaLiveError, EXIT_CODES, UsageError, exitCodeOf } from '../errors.js';
import { FIT_MODES, type Fit } from '../ingest/types.js'; // not index.js: --help must not load sharp
import { LOG_LEVELS, createLogger, type Logger, type LogLevel } from '../logger.js';
import { pino } from 'pino';

/** The streams and environment a command runs with (process's own, or a test's). */
export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

/** The exit-code table shown at the end of every --help and in docs/cli.md. */
export const EXIT_CODES_HELP = [
  'Exit codes:',
  '  0    done',
  `  ${EXIT_CODES.internal}    internal error (a bug: please report it)`,
  `  ${EXIT_CODES.usage}    usage error (bad command, option or config file)`,
  `  ${EXIT_CODES.input}    input error (missing or unreadable file, stream failed)`,
  `  ${EXIT_CODES.model}    model error (missing or invalid model bundle)`,
  `  ${EXIT_CODES.interrupted}  interrupted (Ctrl-C / SIGTERM; files written so far are complete)`,
].join('\n');

/** Thrown by a command to end with a given exit code after it has printed what it had to. */
export class ExitRequest extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export function writeError(err: unknown, stderr: NodeJS.WritableStream = process.stderr, verbose = false): number {
  const code = err instanceof ExitRequest ? err.code : exitCodeOf(err);
  if (err instanceof ExitRequest) return code;
  let message: string;
  if (err instanceof CasaLiveError) message = err.message;
  else if (err instanceof Error) message = `internal error: ${err.message}`;
  else message = `internal error: ${String(err)}`;
  stderr.write(`casa-live: ${message}\n`);
  if (verbose || (!(err instanceof CasaLiveError) && process.env.CASA_LIVE_DEBUG)) {
    if (err instanceof CasaLiveError) for (const d of err.details) stderr.write(`  ${d}\n`);
    if (err instanceof Error && err.stack) stderr.write(`${err.stack}\n`);
  }
  return code;
}

// ------------------------------------------------------------------ option checks

export function positiveInt(value: unknown, flag: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? '1 or more' : `from 1 to ${max}`;
    throw new UsageError(`${flag} must be a whole number ${range}, not ${show(value)}.`);
  }
  return value;
}

export function nonNegativeNumber(value: unknown, flag: string, max = Number.MAX_VALUE): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > max) {
    throw new UsageError(`${flag} must be a number from 0 to ${max}, not ${show(value)}.`);
  }
  return value;
}

export function positiveNumber(value: unknown, flag: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > max) {
    throw new UsageError(`${flag} must be a number above 0 and at most ${max}, not ${show(value)}.`);
  }
  return value;
}

export function seedValue(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= 2 ** 32) {
    throw new UsageError(`--seed must be a whole number from 0 to ${2 ** 32 - 1}, not ${show(value)}.`);
  }
  return value;
}

/** --fit: one of the ingest's FIT_MODES. */
export function fitOption(value: string | undefined): Fit | undefined {
  if (value !== undefined && !(FIT_MODES as readonly string[]).includes(value)) {
    throw new UsageError(`--fit must be one of ${FIT_MODES.join(', ')}, not "${value}".`);
  }
  return value as Fit | undefined;
}

function show(value: unknown): string {
  if (typeof value === 'number' && Number.isNaN(value)) return 'a non-number';
  return typeof value === 'string' ? `"${value}"` : String(value);
}

/** An output file must be writable: its directory must exist and it must not be a directory. */
export function checkOutputFile(file: string, flag: string): string {
  if (file === '') throw new UsageError(`${flag} needs a file name.`);
  const abs = path.resolve(file);
  const dir = path.dirname(abs);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UsageError(`${flag} ${file}: the directory ${dir} does not exist.`);
  }
  if (existsSync(abs) && statSync(abs).isDirectory()) {
    throw new UsageError(`${flag} ${file} is a directory; give a file name.`);
  }
  return abs;
}

// ------------------------------------------------------------------ logging

export function logLevelOption(value: unknown): LogLevel {
  if (value === undefined) return 'silent';
  if (typeof value !== 'string' || !(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${show(value)}.`);
  }
  return value as LogLevel;
}

/** CLI commands log JSON lines to stderr (stdout carries captions); silent by default. */
export function cliLogger(level: LogLevel): Logger {
  return createLogger({ level, destination: pino.destination({ dest: 2, sync: true }), base: { component: 'cli' } });
}

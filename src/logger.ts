/**
 * Structured logging: JSON lines on stdout (journald picks them up under systemd).
 *
 * The destination is synchronous, so a log line is written by the time the call returns:
 * nothing is lost on SIGTERM or on a crash, and `flush()` is never needed before exit.
 */
import { pino, type Logger as PinoLogger, type DestinationStream, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;
export type LogLevel = LevelWithSilent;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface LoggerOptions {
  level?: LogLevel;
  /** Where the JSON lines go; stdout (fd 1, synchronous) when absent. */
  destination?: DestinationStream;
  /** Fields added to every line (e.g. `{ component: 'serve' }`). */
  base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level: options.level ?? 'info',
      base: { pid: process.pid, ...(options.base ?? {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        // "level":"info" rather than "level":30: readable in journalctl and jq alike.
        level: (label) => ({ level: label }),
      },
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
    },
    destination,
  );
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** How much of a user-given text (an input, a path, an ffmpeg line) a log line or message quotes. */
export const CLIP_CHARS = 200;
/** How much of one line of a child process's output (ffmpeg's stderr, the model worker's) is kept and logged. */
export const OUTPUT_LINE_CHARS = 300;

/**
 * `text` shortened to at most `max` characters: its start and its end, with "…" between, so
 * that no log line (or status reason) quoting user input grows with it.
 */
export function clip(text: string, max = CLIP_CHARS): string {
  if (text.length <= max) return text;
  const tail = Math.floor((max - 1) / 3);
  return `${text.slice(0, max - 1 - tail)}…${text.slice(text.length - tail)}`;
}

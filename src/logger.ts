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

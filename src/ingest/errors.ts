/**
 * Typed errors of the ingest layer. Every one carries a one-sentence message for the user,
 * a stable `code` for programs (metrics, status events, tests) and, in `details`, the last
 * lines ffmpeg wrote to stderr (for the log, never shown as the message).
 */
import { ConfigError, InputError, UsageError } from '../errors.js';

export type IngestErrorCode =
  | 'file-not-found'
  | 'file-unreadable'
  | 'no-video-stream'
  | 'corrupt-input'
  | 'dns-failure'
  | 'connection-refused'
  | 'unauthorized'
  | 'forbidden'
  | 'stream-not-found'
  | 'io-timeout'
  | 'stalled'
  | 'connect-timeout'
  | 'stream-dropped'
  | 'device-unavailable'
  | 'protocol-unavailable'
  | 'ffmpeg-failed';

interface IngestErrorOptions {
  input?: string;
  cause?: unknown;
  details?: string[];
}

/** Base class of every input failure that ffmpeg or the source reports. */
export class IngestError extends InputError {
  readonly code: IngestErrorCode;
  /** The input, with credentials redacted. */
  readonly input: string | undefined;

  /** Set when the source's retry policy gave up after this failure: why ("gave up after 3 failed attempts"). */
  gaveUp: string | undefined;

  constructor(code: IngestErrorCode, message: string, options: IngestErrorOptions = {}) {
    super(message, { cause: options.cause, details: options.details });
    this.code = code;
    this.input = options.input;
  }

  /** The retry policy gave up after this failure: `message` now says so too. */
  markGaveUp(why: string, message: string): this {
    this.gaveUp = why;
    this.message = message;
    return this;
  }
}

export class FileNotFoundError extends IngestError {
  constructor(path: string, options: IngestErrorOptions = {}) {
    super('file-not-found', `Input file ${path} does not exist; check the path.`, { input: path, ...options });
  }
}

export class FileUnreadableError extends IngestError {
  constructor(path: string, why: string, options: IngestErrorOptions = {}) {
    super('file-unreadable', `Input file ${path} cannot be read (${why}); check that it is a readable media file.`, {
      input: path,
      ...options,
    });
  }
}

export class NoVideoStreamError extends IngestError {
  constructor(input: string, options: IngestErrorOptions = {}) {
    super('no-video-stream', `Input ${input} has no video stream, so there is nothing to caption.`, { input, ...options });
  }
}

export class CorruptInputError extends IngestError {
  constructor(input: string, hint: string, options: IngestErrorOptions = {}) {
    super('corrupt-input', `Input ${input} is corrupt or truncated and ffmpeg cannot decode it (${hint}).`, {
      input,
      ...options,
    });
  }
}

export class DnsFailureError extends IngestError {
  readonly host: string;
  constructor(input: string, host: string, options: IngestErrorOptions = {}) {
    super('dns-failure', `Cannot resolve host name ${host} of input ${input}; check the address and DNS.`, {
      input,
      ...options,
    });
    this.host = host;
  }
}

export class ConnectionRefusedError extends IngestError {
  constructor(input: string, endpoint: string, options: IngestErrorOptions = {}) {
    super('connection-refused', `Connection to ${endpoint} for input ${input} was refused; check that the server is running and the port is right.`, {
      input,
      ...options,
    });
  }
}

export class UnauthorizedError extends IngestError {
  constructor(input: string, options: IngestErrorOptions = {}) {
    super('unauthorized', `The server refused input ${input} with 401 Unauthorized; check the user name and password in the URL.`, {
      input,
      ...options,
    });
  }
}

export class ForbiddenError extends IngestError {
  constructor(input: string, options: IngestErrorOptions = {}) {
    super('forbidden', `The server refused input ${input} with 403 Forbidden; this account may not read that stream.`, {
      input,
      ...options,
    });
  }
}

export class StreamNotFoundError extends IngestError {
  constructor(input: string, options: IngestErrorOptions = {}) {
    super('stream-not-found', `The server has no stream at ${input} (404 Not Found); check the stream path.`, {
      input,
      ...options,
    });
  }
}

export class IoTimeoutError extends IngestError {
  constructor(input: string, seconds: number, options: IngestErrorOptions = {}) {
    super('io-timeout', `Input ${input} sent no data for ${formatSeconds(seconds)} and ffmpeg gave up on it.`, {
      input,
      ...options,
    });
  }
}

export class StreamStalledError extends IngestError {
  readonly stallSeconds: number;
  constructor(input: string, seconds: number, options: IngestErrorOptions = {}) {
    super('stalled', `No frame arrived from ${input} for ${formatSeconds(seconds)}, so the stream was declared stalled.`, {
      input,
      ...options,
    });
    this.stallSeconds = seconds;
  }
}

export class ConnectTimeoutError extends IngestError {
  readonly timeoutSeconds: number;
  constructor(input: string, seconds: number, options: IngestErrorOptions = {}) {
    super(
      'connect-timeout',
      `No frame came from ${input} within ${formatSeconds(seconds)} of starting ffmpeg; check that the stream is publishing and reachable.`,
      { input, ...options },
    );
    this.timeoutSeconds = seconds;
  }
}

export class StreamDroppedError extends IngestError {
  constructor(input: string, why: string, options: IngestErrorOptions = {}) {
    super('stream-dropped', `Live input ${input} dropped (${why}).`, { input, ...options });
  }
}

export class DeviceUnavailableError extends IngestError {
  constructor(device: string, why: string, options: IngestErrorOptions = {}) {
    super('device-unavailable', `Video device ${device} is not available (${why}); check that it is plugged in and not in use.`, {
      input: device,
      ...options,
    });
  }
}

export class ProtocolUnavailableError extends IngestError {
  constructor(input: string, scheme: string, ffmpegPath: string, options: IngestErrorOptions = {}) {
    super('protocol-unavailable', `The ffmpeg at ${ffmpegPath} cannot read ${scheme}:// inputs such as ${input}; use an ffmpeg built with ${scheme} support.`, {
      input,
      ...options,
    });
  }
}

export class FfmpegFailedError extends IngestError {
  constructor(input: string, what: string, options: IngestErrorOptions = {}) {
    super('ffmpeg-failed', `ffmpeg failed on input ${input}: ${what}.`, { input, ...options });
  }
}

/** The input string names no input casa-live can read (exit code 2, like other usage errors). */
export class UnsupportedInputError extends UsageError {
  readonly code = 'unsupported-input' as const;
  readonly input: string;
  constructor(input: string, message: string) {
    super(message);
    this.input = input;
  }
}

/** No usable ffmpeg / ffprobe binary (a configuration problem, exit code 2). */
export class FfmpegNotFoundError extends ConfigError {
  readonly code = 'ffmpeg-not-found' as const;
  constructor(message: string, options?: { cause?: unknown; details?: string[] }) {
    super(message, options);
  }
}

function formatSeconds(s: number): string {
  const rounded = Math.round(s * 10) / 10;
  return `${rounded} s`;
}

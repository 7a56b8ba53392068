/**
 * The only module that touches fluent-ffmpeg (archived upstream): it starts one ffmpeg child
 * with the given arguments, pipes its stdout into a Writable, hands stderr over line by line,
 * and exposes the child's lifetime. Swapping fluent-ffmpeg for child_process.spawn means
 * rewriting this file only.
 *
 * fluent-ffmpeg notes:
 * - Its binary path setters are process-global; each command here gets its own path instead
 *   (the instance's _getFfmpegPath is overridden), so sources with different ffmpegs can run side by side.
 * - Before spawning it runs `ffmpeg -formats` / `-encoders` once per process (cached) to check the
 *   output format; the child is spawned after that, asynchronously, so kill() may come first.
 * - It kills ffmpeg when the output stream emits 'close'; the Writable given here must not emit
 *   'close' (emitClose: false), so that the end of a file is seen through the process exit only.
 */
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import ffmpeg from 'fluent-ffmpeg';
import { hasExited, killAndWait, trackChild } from './children.js';

export interface FfmpegChildOptions {
  ffmpegPath: string;
  /** A URL or path after -i, or a stream piped into ffmpeg's stdin (then -i pipe:0). */
  input: string | Readable;
  inputOptions: string[];
  outputOptions: string[];
  /** Receives ffmpeg's stdout (the raw frames). */
  stdout: Writable;
  /** A second output, to a file (the HLS playlist). */
  extraOutput?: { target: string; options: string[] };
  onStderrLine: (line: string) => void;
  /** Lines of stderr kept by fluent-ffmpeg for its own messages (default 50). */
  stderrLines?: number;
  /** Added to this process's niceness for the child (fluent-ffmpeg starts it through `nice -n`; 0 or absent: not; ignored on Windows). */
  niceness?: number | undefined;
}

export interface FfmpegExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The child could not be started (fluent-ffmpeg's preparation or spawn failed). */
  startError?: Error;
}

export interface FfmpegChild {
  /** The ffmpeg command line (for logs), once started. */
  readonly commandLine: string | undefined;
  readonly pid: number | undefined;
  /** Resolves when ffmpeg has exited and its stdout and stderr are drained (never rejects). */
  readonly closed: Promise<FfmpegExit>;
  /** SIGKILLs ffmpeg (now, or as soon as it is spawned) and resolves once it has been reaped. */
  kill(): Promise<void>;
}

type GetPath = (cb: (err: Error | null, path?: string) => void) => void;

export function startFfmpeg(opts: FfmpegChildOptions): FfmpegChild {
  const command = ffmpeg({ stdoutLines: opts.stderrLines ?? 50, niceness: opts.niceness ?? 0 });
  // Per-instance binary (see the header comment).
  (command as unknown as { _getFfmpegPath: GetPath })._getFfmpegPath = (cb) => cb(null, opts.ffmpegPath);

  command.input(opts.input);
  // Spread: with several arguments fluent-ffmpeg takes each as given (one string alone would
  // be split at a space).
  if (opts.inputOptions.length > 0) command.inputOptions(...opts.inputOptions);
  command.output(opts.stdout, { end: true });
  if (opts.outputOptions.length > 0) command.outputOptions(...opts.outputOptions);
  if (opts.extraOutput) command.output(opts.extraOutput.target).outputOptions(...opts.extraOutput.options);

  let proc: ChildProcess | undefined;
  let commandLine: string | undefined;
  let killRequested = false;
  let resolveClosed!: (e: FfmpegExit) => void;
  let closedSettled = false;
  const closed = new Promise<FfmpegExit>((r) => {
    resolveClosed = (e) => {
      if (!closedSettled) {
        closedSettled = true;
        r(e);
      }
    };
  });
  let resolveSpawned!: (p: ChildProcess | undefined) => void;
  const spawned = new Promise<ChildProcess | undefined>((r) => (resolveSpawned = r));

  command.on('start', (line: string) => {
    commandLine = line;
    proc = (command as unknown as { ffmpegProc?: ChildProcess }).ffmpegProc;
    if (!proc) return;
    trackChild(proc);
    proc.once('close', (code: number | null, signal: NodeJS.Signals | null) => resolveClosed({ code, signal }));
    proc.once('error', (err: Error) => {
      if (hasExited(proc!) && proc!.pid === undefined) resolveClosed({ code: null, signal: null, startError: err });
    });
    resolveSpawned(proc);
    if (killRequested) void killAndWait(proc);
  });
  command.on('stderr', (line: string) => opts.onStderrLine(line));
  command.on('error', (err: Error) => {
    // fluent-ffmpeg reports non-zero exits here too; the exit is handled through 'close'.
    // Without a process this is a failure to prepare or spawn.
    if (!proc) {
      resolveSpawned(undefined);
      resolveClosed({ code: null, signal: null, startError: err });
    }
  });
  command.run();

  return {
    get commandLine() {
      return commandLine;
    },
    get pid() {
      return proc?.pid;
    },
    closed,
    async kill() {
      killRequested = true;
      const p = proc ?? (await Promise.race([spawned, closed.then(() => undefined)]));
      if (!p) return;
      if (typeof opts.input !== 'string' && p.stdin) opts.input.unpipe(p.stdin);
      await killAndWait(p);
    },
  };
}

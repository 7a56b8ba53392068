/** `casa-live frames <input> --out DIR`: the frames the model would see, as PNG files. */
import path from 'node:path';
import { ModelError, UsageError } from '../errors.js';
import { FIT_MODES, runFramesCommand, type Fit } from '../ingest/index.js';
import { readManifest } from '../model/bundle.js';
import { embeddedModelDir, resolveModelRef } from '../pipeline/models.js';
import { clockTime } from '../sinks/timecode.js';
import { releaseEarlySignals } from './signals.js';
import { cliLogger, logLevelOption, positiveInt, positiveNumber } from './common.js';

export interface FramesArgs {
  input: string;
  out: string;
  count?: number;
  fps?: number;
  width?: number;
  height?: number;
  fit?: string;
  model?: string;
  realtime?: boolean;
  quiet?: boolean;
  'log-level'?: string;
}


export async function runFramesCli(
  args: FramesArgs,
  io: { stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream; env: NodeJS.ProcessEnv },
): Promise<number> {
  if (Array.isArray(args.out) || Array.isArray(args.input)) throw new UsageError('frames takes one input and one --out directory.');
  const count = positiveInt(args.count, '--count');
  let fps = positiveNumber(args.fps, '--fps', 240);
  let width = positiveInt(args.width, '--width', 16384);
  let height = positiveInt(args.height, '--height', 16384);
  if (args.fit !== undefined && !(FIT_MODES as readonly string[]).includes(args.fit)) {
    throw new UsageError(`--fit must be one of ${FIT_MODES.join(', ')}, not "${args.fit}".`);
  }
  let fit = args.fit as Fit | undefined;
  const logger = cliLogger(logLevelOption(args['log-level']));
  if (width === undefined || height === undefined || fit === undefined || fps === undefined || args.model !== undefined) {
    // The defaults come from the model's manifest: exactly what captioning would feed it.
    const dir = args.model !== undefined ? resolveModelRef(args.model, process.cwd(), io.env) : embeddedModelDir(io.env);
    let manifest;
    try {
      manifest = readManifest(dir).manifest;
    } catch (err) {
      if (width === undefined || height === undefined) {
        throw new ModelError(
          `Cannot read the model's input size from ${dir} (${(err as Error).message}); pass --model DIR, or --width and --height.`,
          { cause: err },
        );
      }
      manifest = undefined;
    }
    width ??= manifest?.image.width;
    height ??= manifest?.image.height;
    fit ??= manifest?.image.fit;
    fps ??= manifest?.generation.fps;
  }

  const ac = new AbortController();
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  releaseEarlySignals();
  const tty = io.stdout.isTTY === true && !args.quiet;
  try {
    const result = await runFramesCommand({
      input: args.input,
      out: args.out,
      ...(count !== undefined ? { count } : {}),
      ...(fps !== undefined ? { fps } : {}),
      ...(width !== undefined ? { width } : {}),
      ...(height !== undefined ? { height } : {}),
      ...(fit !== undefined ? { fit } : {}),
      ...(args.realtime ? { realtime: true } : {}),
      logger,
      signal: ac.signal,
      onFrame: (frame, file) => {
        if (args.quiet) return;
        if (tty) io.stdout.write(`\r\x1b[2K${frame.index + 1} frames  ${clockTime(frame.ptsSeconds)}  ${file}`);
        else io.stdout.write(`${path.join(args.out, file)}\t${frame.ptsSeconds.toFixed(3)}\n`);
      },
      onStatus: (s) => {
        if (!args.quiet && (s.state === 'reconnecting' || s.state === 'error')) {
          io.stderr.write(`${tty ? '\r\x1b[2K' : ''}casa-live: ${s.state}${s.reason ? `: ${s.reason}` : ''}\n`);
        }
      },
    });
    if (tty) io.stdout.write('\r\x1b[2K');
    if (!args.quiet) {
      const line = `wrote ${result.frames} frame${result.frames === 1 ? '' : 's'} (${width}x${height}) to ${result.outDir}, times in ${result.jsonlPath}\n`;
      (tty ? io.stdout : io.stderr).write(line);
    }
    if (interrupted) {
      io.stderr.write('casa-live: interrupted; the frames written so far are complete\n');
      return 130;
    }
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** `casa-live frames <input> --out DIR`: the frames the model would see, as PNG files. */
import path from 'node:path';
import { ModelError, UsageError } from '../errors.js';
import { clip } from '../logger.js';
import { bundleDirOf } from '../model-ref.js';
import { runFramesCommand, type Fit, type FramesCommandOptions, type FramesCommandResult } from '../ingest/index.js';
import { readManifest } from '../model/bundle.js';
import { embeddedModelDir, resolveModelRef } from '../pipeline/models.js';
import { clockTime } from '../sinks/timecode.js';
import { releaseEarlySignals } from './signals.js';
import { cliLogger, fitOption, logLevelOption, positiveInt, positiveNumber, type CliIo } from './common.js';

/** The command line's options: the frames command's own, unchecked, plus the CLI's. */
export type FramesArgs = Pick<FramesCommandOptions, 'input' | 'out' | 'count' | 'fps' | 'width' | 'height' | 'realtime'> & {
  fit?: string;
  model?: string;
  quiet?: boolean;
  'log-level'?: string;
};

/** Size, fit and rate of the frames: as given; withModelDefaults fills the rest from the model's manifest. */
interface FrameShape {
  width: number | undefined;
  height: number | undefined;
  fit: Fit | undefined;
  fps: number | undefined;
}

function frameShapeOptions(args: FramesArgs): FrameShape {
  return {
    fps: positiveNumber(args.fps, '--fps', 240),
    width: positiveInt(args.width, '--width', 16384),
    height: positiveInt(args.height, '--height', 16384),
    fit: fitOption(args.fit),
  };
}

function withModelDefaults(shape: FrameShape, args: FramesArgs, env: NodeJS.ProcessEnv): FrameShape {
  if (shape.width !== undefined && shape.height !== undefined && shape.fit !== undefined && shape.fps !== undefined && args.model === undefined) {
    return shape;
  }
  // The defaults come from the model's manifest (a bundle's, or torch:'s bundle's): exactly what captioning would feed it.
  const ref = args.model !== undefined ? resolveModelRef(args.model, process.cwd(), env) : embeddedModelDir(env);
  const dir = bundleDirOf(ref);
  if (dir === undefined) {
    if (shape.width !== undefined && shape.height !== undefined) return shape;
    throw new UsageError(
      `The model ${clip(ref)} runs in the model worker and has no bundle to read its input size from; pass --width and --height (448 for the released CASA models), or --model with a bundle.`,
    );
  }
  let manifest;
  try {
    manifest = readManifest(dir).manifest;
  } catch (err) {
    if (shape.width === undefined || shape.height === undefined) {
      throw new ModelError(
        `Cannot read the model's input size from ${dir} (${(err as Error).message}); pass --model DIR, or --width and --height.`,
        { cause: err },
      );
    }
    return shape;
  }
  return {
    width: shape.width ?? manifest.image.width,
    height: shape.height ?? manifest.image.height,
    fit: shape.fit ?? manifest.image.fit,
    fps: shape.fps ?? manifest.generation.fps,
  };
}

export async function runFramesCli(args: FramesArgs, io: CliIo): Promise<number> {
  if (Array.isArray(args.out) || Array.isArray(args.input)) throw new UsageError('frames takes one input and one --out directory.');
  const count = positiveInt(args.count, '--count');
  const given = frameShapeOptions(args);
  const logger = cliLogger(logLevelOption(args['log-level']));
  const shape = withModelDefaults(given, args, io.env);

  // Ctrl-C: the first stops reading (the frames written are kept), a second quits at once.
  const ac = new AbortController();
  const onSignal = (): void => {
    if (ac.signal.aborted) process.exit(130);
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
      ...(shape.fps !== undefined ? { fps: shape.fps } : {}),
      ...(shape.width !== undefined ? { width: shape.width } : {}),
      ...(shape.height !== undefined ? { height: shape.height } : {}),
      ...(shape.fit !== undefined ? { fit: shape.fit } : {}),
      ...(args.realtime ? { realtime: true } : {}),
      logger,
      signal: ac.signal,
      ...progressCallbacks(args, io, tty),
    });
    if (tty) io.stdout.write('\r\x1b[2K');
    if (!args.quiet) (tty ? io.stdout : io.stderr).write(summaryLine(result, shape));
    if (ac.signal.aborted) {
      io.stderr.write('casa-live: interrupted; the frames written so far are complete\n');
      return 130;
    }
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** One line per frame written (redrawn in place on a terminal); reconnects and errors on stderr. */
function progressCallbacks(args: FramesArgs, io: CliIo, tty: boolean): Pick<FramesCommandOptions, 'onFrame' | 'onStatus'> {
  return {
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
  };
}

function summaryLine(result: FramesCommandResult, shape: FrameShape): string {
  return `wrote ${result.frames} frame${result.frames === 1 ? '' : 's'} (${shape.width}x${shape.height}) to ${result.outDir}, times in ${result.jsonlPath}\n`;
}

/**
 * `casa-live frames <input> --out DIR [--count N] [--fps F]`: writes the frames the model would
 * see as PNG files (frame-000000.png, …) plus frames.jsonl ({"index","pts","file"} per line).
 * The CLI (src/cli) wires its arguments to runFramesCommand().
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { UsageError } from '../errors.js';
import { openFrameSource } from './source.js';
import type { Fit, Frame, IngestLogger, SourceOptions, SourceStatus } from './types.js';

export interface FramesCommandOptions {
  input: string;
  /** Output directory (created if missing). */
  out: string;
  /** Stop after this many frames (default: until the input ends or `signal` aborts). */
  count?: number;
  /** Default 2, as in captioning. */
  fps?: number;
  /** The model's input size (default 224 x 224); the CLI passes the model manifest's. */
  width?: number;
  height?: number;
  fit?: Fit;
  realtime?: boolean;
  rtspTransport?: 'tcp' | 'udp';
  ffmpegPath?: string;
  ffprobePath?: string;
  /** Any further source options (stall timeout, reconnect policy, …). */
  source?: Partial<Omit<SourceOptions, 'input' | 'width' | 'height'>>;
  logger?: IngestLogger;
  /** Aborting stops the source; the frames written so far are kept. */
  signal?: AbortSignal;
  /** Called after each frame is written (progress output). */
  onFrame?: (frame: Frame, file: string) => void;
  onStatus?: (status: SourceStatus) => void;
}

export interface FramesCommandResult {
  frames: number;
  outDir: string;
  jsonlPath: string;
  droppedFrames: number;
  reconnects: number;
}

export async function runFramesCommand(opts: FramesCommandOptions): Promise<FramesCommandResult> {
  if (!opts.out) throw new UsageError('frames: --out DIR is required.');
  if (opts.count !== undefined && !(Number.isInteger(opts.count) && opts.count > 0)) {
    throw new UsageError(`frames: --count must be a whole number above 0, not ${String(opts.count)}.`);
  }
  const source = openFrameSource({
    ...opts.source,
    input: opts.input,
    width: opts.width ?? 224,
    height: opts.height ?? 224,
    ...(opts.fit !== undefined ? { fit: opts.fit } : {}),
    ...(opts.fps !== undefined ? { fps: opts.fps } : {}),
    ...(opts.realtime !== undefined ? { realtime: opts.realtime } : {}),
    ...(opts.rtspTransport !== undefined ? { rtspTransport: opts.rtspTransport } : {}),
    ...(opts.ffmpegPath !== undefined ? { ffmpegPath: opts.ffmpegPath } : {}),
    ...(opts.ffprobePath !== undefined ? { ffprobePath: opts.ffprobePath } : {}),
    ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
    ...(opts.count !== undefined ? { maxFrames: opts.count } : {}),
  });
  if (opts.onStatus) source.on('status', opts.onStatus);

  await mkdir(opts.out, { recursive: true });
  const jsonlPath = join(opts.out, 'frames.jsonl');
  const jsonl = createWriteStream(jsonlPath, { flags: 'w' });
  const jsonlError = once(jsonl, 'error').then(([err]) => {
    throw err;
  });
  jsonlError.catch(() => {});

  const onAbort = (): void => void source.stop();
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  let written = 0;
  try {
    for await (const frame of source.frames()) {
      const file = `frame-${String(frame.index).padStart(6, '0')}.png`;
      await sharp(frame.rgb, { raw: { width: frame.width, height: frame.height, channels: 3 } })
        .png()
        .toFile(join(opts.out, file));
      const line = `${JSON.stringify({ index: frame.index, pts: frame.ptsSeconds, file })}\n`;
      if (!jsonl.write(line)) await Promise.race([once(jsonl, 'drain'), jsonlError]);
      written++;
      opts.onFrame?.(frame, file);
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await source.stop();
    jsonl.end();
    await Promise.race([once(jsonl, 'finish'), jsonlError]);
  }
  return { frames: written, outDir: opts.out, jsonlPath, droppedFrames: source.droppedFrames, reconnects: source.reconnects };
}

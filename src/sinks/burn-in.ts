/**
 * `--burn-in FILE`: a copy of the input video with the captions rendered into the picture,
 * through ffmpeg's `subtitles` filter (libass). The output is written next to FILE under a
 * temporary name and renamed when ffmpeg has finished, so FILE is either absent or a whole
 * video, never a truncated one.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import { CasaLiveError, ConfigError, InputError } from '../errors.js';
import { killAndWait, runCapture, trackChild } from '../ingest/children.js';
import type { Cue } from './segmenter.js';
import { formatSubtitles } from './subtitles.js';

export interface BurnInOptions {
  ffmpegPath: string;
  /** The input video, a local file path. */
  input: string;
  /** The output video; its extension picks the container (mp4, mkv, webm, mov, …). */
  output: string;
  cues: Cue[];
  /** Cut the output at this many seconds (the run was stopped early, e.g. --max-frames). */
  durationSeconds?: number;
  /** Duration of the whole output (for progress), when known. */
  expectedSeconds?: number;
  signal?: AbortSignal;
  /** 0..1 as ffmpeg encodes (only when expectedSeconds is given). */
  onProgress?: (fraction: number) => void;
}

const cache = new Map<string, Promise<boolean>>();

/** Whether this ffmpeg has the `subtitles` filter (it needs libass; some static builds lack it). */
export function hasSubtitlesFilter(ffmpegPath: string): Promise<boolean> {
  let p = cache.get(ffmpegPath);
  if (!p) {
    p = runCapture(ffmpegPath, ['-hide_banner', '-filters'], { timeoutMs: 15_000 }).then((r) =>
      /^\s*\S+\s+subtitles\s+V->V/m.test(r.stdout),
    );
    cache.set(ffmpegPath, p);
  }
  return p;
}

/** Throws a ConfigError naming the binary when it cannot burn in subtitles. */
export async function assertCanBurnIn(ffmpegPath: string): Promise<void> {
  if (!(await hasSubtitlesFilter(ffmpegPath))) {
    throw new ConfigError(
      `The ffmpeg at ${ffmpegPath} has no "subtitles" filter (it was built without libass), so --burn-in cannot work; install a full ffmpeg (e.g. apt-get install ffmpeg) or point FFMPEG_PATH at one.`,
    );
  }
}

/**
 * Escapes a path for use as a filter option value inside an ffmpeg filtergraph: first the
 * option level (\ ' :), then the graph level (\ ' [ ] , ;).
 */
export function escapeFilterValue(value: string): string {
  const opt = value.replace(/[\\':]/g, (c) => `\\${c}`);
  return opt.replace(/[\\'[\],;]/g, (c) => `\\${c}`);
}

export async function burnIn(opts: BurnInOptions): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'casa-live-burn-'));
  const ext = extname(opts.output);
  const partial = join(dirname(opts.output), `.${basename(opts.output, ext)}.partial-${process.pid}${ext}`);
  try {
    const srt = join(work, 'captions.srt');
    writeFileSync(srt, formatSubtitles('srt', opts.cues));
    const args = [
      '-hide_banner',
      '-nostdin',
      '-nostats',
      '-loglevel',
      'error',
      '-progress',
      'pipe:1',
      '-y',
      '-i',
      `file:${opts.input}`,
      '-map',
      '0:v:0',
      '-map',
      '0:a?',
      '-vf',
      `subtitles=filename=${escapeFilterValue(srt)}`,
      ...(opts.durationSeconds !== undefined ? ['-t', opts.durationSeconds.toFixed(3)] : []),
      `file:${partial}`,
    ];
    await runFfmpeg(opts, args);
    await rename(partial, opts.output);
  } finally {
    await rm(partial, { force: true }).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

function runFfmpeg(opts: BurnInOptions, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new CasaLiveError('interrupted', 'Interrupted before the burned-in video was written.'));
      return;
    }
    const child = spawn(opts.ffmpegPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child);
    let stderr = '';
    let aborted = false;
    const onAbort = (): void => {
      aborted = true;
      void killAndWait(child);
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-8000);
    });
    let buf = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^out_time_(?:us|ms)=(\d+)/.exec(line);
        const total = opts.durationSeconds ?? opts.expectedSeconds;
        if (m && total && opts.onProgress) opts.onProgress(Math.min(1, Number(m[1]) / 1e6 / total));
      }
    });
    child.once('error', (err) => {
      opts.signal?.removeEventListener('abort', onAbort);
      reject(new ConfigError(`Cannot run ffmpeg at ${opts.ffmpegPath} for --burn-in (${err.message}).`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (aborted) {
        reject(new CasaLiveError('interrupted', 'Interrupted while writing the burned-in video; it was not written.'));
        return;
      }
      if (code === 0) {
        resolve();
        return;
      }
      const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
      const last = lines[lines.length - 1] ?? `exit ${code ?? signal}`;
      reject(new InputError(`Burning the captions into ${opts.output} failed: ffmpeg says "${last}".`, { details: lines.slice(-12) }));
    });
  });
}

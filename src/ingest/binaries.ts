/**
 * Finding ffmpeg and ffprobe: a configured path, else FFMPEG_PATH / FFPROBE_PATH, else the
 * system's (on PATH), else the bundled npm builds (@ffmpeg-installer/ffmpeg,
 * @ffprobe-installer/ffprobe). The version decides a few option spellings.
 */
import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { runCapture } from './children.js';
import { FfmpegNotFoundError } from './errors.js';
import type { IngestLogger } from './types.js';

export type BinarySource = 'configured' | 'env' | 'system' | 'bundled';

export interface FfmpegFeatures {
  /** libavformat major.minor (59.27 = ffmpeg 5.1); undefined when -version did not say. */
  libavformat?: { major: number; minor: number };
  /** `-fps_mode` exists (ffmpeg >= 5.1); else `-vsync` is used. */
  fpsMode: boolean;
  /** Name of the RTSP socket I/O timeout option: `-timeout` (>= 5.0) or `-stimeout` (4.x). */
  rtspTimeoutOption: '-timeout' | '-stimeout';
}

export interface ResolvedFfmpeg {
  ffmpegPath: string;
  ffprobePath: string;
  /** Where ffmpeg came from. */
  source: BinarySource;
  /** ffmpeg's version string, e.g. "5.1.9-0+deb12u1". */
  version: string;
  features: FfmpegFeatures;
}

export interface ResolveFfmpegOptions {
  ffmpegPath?: string;
  ffprobePath?: string;
  logger?: IngestLogger;
}

const require = createRequire(import.meta.url);
const cache = new Map<string, Promise<ResolvedFfmpeg>>();

/** Resolves (and caches) the binaries; logs which ffmpeg is used and its version once. */
export function resolveFfmpeg(opts: ResolveFfmpegOptions = {}): Promise<ResolvedFfmpeg> {
  const key = JSON.stringify([
    opts.ffmpegPath ?? null,
    opts.ffprobePath ?? null,
    process.env.FFMPEG_PATH ?? null,
    process.env.FFPROBE_PATH ?? null,
    process.env.PATH ?? null,
  ]);
  let pending = cache.get(key);
  if (!pending) {
    pending = doResolve(opts);
    cache.set(key, pending);
    pending.then(
      (r) =>
        opts.logger?.info(
          { ffmpeg: r.ffmpegPath, ffprobe: r.ffprobePath, source: r.source, version: r.version },
          `using ${r.source} ffmpeg ${r.version}`,
        ),
      () => cache.delete(key),
    );
  }
  return pending;
}

async function doResolve(opts: ResolveFfmpegOptions): Promise<ResolvedFfmpeg> {
  let ffmpegPath: string;
  let source: BinarySource;
  const envFfmpeg = process.env.FFMPEG_PATH;
  if (opts.ffmpegPath) {
    ffmpegPath = await requireExecutable(opts.ffmpegPath, 'configured ffmpeg path');
    source = 'configured';
  } else if (envFfmpeg) {
    ffmpegPath = await requireExecutable(envFfmpeg, 'FFMPEG_PATH');
    source = 'env';
  } else {
    const onPath = await findOnPath('ffmpeg');
    if (onPath) {
      ffmpegPath = onPath;
      source = 'system';
    } else {
      const bundled = await bundledPath('@ffmpeg-installer/ffmpeg');
      if (!bundled) {
        throw new FfmpegNotFoundError(
          'No ffmpeg found: set ffmpegPath or FFMPEG_PATH, install ffmpeg (e.g. apt-get install ffmpeg), or install @ffmpeg-installer/ffmpeg.',
        );
      }
      ffmpegPath = bundled;
      source = 'bundled';
    }
  }

  const envFfprobe = process.env.FFPROBE_PATH;
  let ffprobePath: string | undefined;
  if (opts.ffprobePath) {
    ffprobePath = await requireExecutable(opts.ffprobePath, 'configured ffprobe path');
  } else if (envFfprobe) {
    ffprobePath = await requireExecutable(envFfprobe, 'FFPROBE_PATH');
  } else {
    // ffprobe of the same build first, then PATH, then the bundled one.
    const sibling = join(dirname(ffmpegPath), ffmpegPath.endsWith('.exe') ? 'ffprobe.exe' : 'ffprobe');
    ffprobePath =
      (source !== 'bundled' && (await isExecutable(sibling)) ? sibling : undefined) ??
      (await findOnPath('ffprobe')) ??
      (await bundledPath('@ffprobe-installer/ffprobe'));
    if (!ffprobePath) {
      throw new FfmpegNotFoundError(
        'No ffprobe found: set ffprobePath or FFPROBE_PATH, install ffmpeg (which ships ffprobe), or install @ffprobe-installer/ffprobe.',
      );
    }
  }

  const res = await runCapture(ffmpegPath, ['-hide_banner', '-version'], { timeoutMs: 15_000 });
  if (res.spawnError || res.code !== 0) {
    throw new FfmpegNotFoundError(
      `ffmpeg at ${ffmpegPath} does not run (${res.spawnError?.message ?? `exit code ${res.code ?? res.signal}`}); point ffmpegPath or FFMPEG_PATH at a working ffmpeg.`,
      { details: res.stderr.split('\n').slice(-5) },
    );
  }
  const { version, features } = parseVersionOutput(res.stdout);
  return { ffmpegPath, ffprobePath, source, version, features };
}

/** Parses `ffmpeg -version` output. Exported for tests. */
export function parseVersionOutput(text: string): { version: string; features: FfmpegFeatures } {
  const version = /(?:ffmpeg|ffprobe) version (\S+)/.exec(text)?.[1] ?? 'unknown';
  const lavf = /libavformat\s+(\d+)\.\s*(\d+)\./.exec(text);
  const libavformat = lavf ? { major: Number(lavf[1]), minor: Number(lavf[2]) } : undefined;
  // Without a libavformat line assume a current ffmpeg.
  const atLeast = (major: number, minor: number): boolean =>
    !libavformat || libavformat.major > major || (libavformat.major === major && libavformat.minor >= minor);
  return {
    version,
    features: {
      ...(libavformat ? { libavformat } : {}),
      fpsMode: atLeast(59, 27),
      rtspTimeoutOption: atLeast(59, 0) ? '-timeout' : '-stimeout',
    },
  };
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return false;
    await access(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function requireExecutable(path: string, what: string): Promise<string> {
  if (await isExecutable(path)) return path;
  throw new FfmpegNotFoundError(`The ${what} ${path} is not an executable file; fix it or unset it.`);
}

async function findOnPath(name: string): Promise<string | undefined> {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

async function bundledPath(pkg: string): Promise<string | undefined> {
  try {
    const mod = require(pkg) as { path?: string };
    if (mod.path && (await isExecutable(mod.path))) return mod.path;
  } catch {
    /* not installed for this platform */
  }
  return undefined;
}

/** Drops cached resolutions (tests that change FFMPEG_PATH / PATH). */
export function clearFfmpegCache(): void {
  cache.clear();
}

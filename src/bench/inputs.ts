/**
 * Benchmark inputs: a long synthetic stream of frames (the project's procedural world, via
 * tools/casa_model, with a built-in fallback) and video clips encoded from it with ffmpeg.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { resolveFfmpeg } from '../ingest/index.js';
import { pythonInterpreter, pythonMissing } from '../install.js';

const run = promisify(execFile);

export function cacheDir(): string {
  const dir = path.join(os.tmpdir(), 'casa-live-bench');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export interface FrameStream {
  /** Concatenated rgb24 frames (width × height × 3 bytes each). */
  framesPath: string;
  frames: number;
  width: number;
  height: number;
  /** 'world': tools/casa_model's procedural video world (ground truth known); 'procedural': the built-in fallback. */
  source: 'world' | 'procedural';
  /** How it was made. */
  recipe: string;
}

/**
 * A stream of `frames` frames at `size`×`size`: the world tool's long ground-truth stream
 * (`python3 -m tools.casa_model stream`) when the repository's tool and PyTorch are there,
 * else moving coloured squares drawn here. Cached in the OS temp dir.
 */
export async function frameStream(root: string, frames: number, size: number, log: (l: string) => void): Promise<FrameStream> {
  const seed = 2_800_000;
  const dir = path.join(cacheDir(), `world-${size}-${frames}-${seed}`);
  const framesPath = path.join(dir, 'frames.rgb');
  const want = frames * size * size * 3;
  const recipe = `PYTHONPATH=. ${pythonInterpreter()} -m tools.casa_model stream --out DIR --stream-frames ${frames} --stream-seed ${seed} --image-size ${size}`;
  if (existsSync(framesPath) && statSync(framesPath).size === want) {
    return { framesPath, frames, width: size, height: size, source: 'world', recipe };
  }
  const tool = path.join(root, 'tools', 'casa_model', '__main__.py');
  if (existsSync(tool) && !pythonMissing(pythonInterpreter())) {
    log(`writing a ${frames}-frame world stream (${recipe})`);
    try {
      await run(
        pythonInterpreter(),
        ['-m', 'tools.casa_model', 'stream', '--out', dir, '--stream-frames', String(frames), '--stream-seed', String(seed), '--image-size', String(size), '--threads', '1'],
        { cwd: root, env: { ...process.env, PYTHONPATH: root }, maxBuffer: 1 << 20 },
      );
      if (existsSync(framesPath) && statSync(framesPath).size === want) return { framesPath, frames, width: size, height: size, source: 'world', recipe };
    } catch (err) {
      log(`the world tool failed (${(err as Error).message.split('\n')[0]}); using built-in procedural frames`);
    }
  }
  const pdir = path.join(cacheDir(), `procedural-${size}-${frames}`);
  const ppath = path.join(pdir, 'frames.rgb');
  if (!(existsSync(ppath) && statSync(ppath).size === want)) {
    mkdirSync(pdir, { recursive: true });
    writeFileSync(`${ppath}.tmp`, proceduralFrames(frames, size));
    renameSync(`${ppath}.tmp`, ppath);
  }
  return { framesPath: ppath, frames, width: size, height: size, source: 'procedural', recipe: 'src/bench/inputs.ts proceduralFrames (moving squares on a gradient)' };
}

/** Moving coloured squares on a slowly changing gradient (deterministic). */
export function proceduralFrames(frames: number, size: number): Buffer {
  const out = Buffer.alloc(frames * size * size * 3);
  const palette = [
    [230, 40, 40],
    [40, 200, 60],
    [40, 80, 230],
    [240, 220, 40],
    [250, 250, 250],
  ] as const;
  for (let f = 0; f < frames; f++) {
    const base = f * size * size * 3;
    const g = (f * 3) % 256;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const o = base + (y * size + x) * 3;
        out[o] = (x * 2 + g) & 255;
        out[o + 1] = (y * 2) & 255;
        out[o + 2] = 128;
      }
    }
    for (let k = 0; k < 3; k++) {
      const c = palette[(k + Math.floor(f / 40)) % palette.length] as readonly number[];
      const s = Math.max(4, Math.floor(size / (6 + 2 * k)));
      const px = Math.floor((Math.sin((f + 17 * k) / (9 + k)) * 0.5 + 0.5) * (size - s));
      const py = Math.floor((Math.cos((f + 29 * k) / (13 + k)) * 0.5 + 0.5) * (size - s));
      for (let y = py; y < py + s; y++) {
        for (let x = px; x < px + s; x++) {
          const o = base + (y * size + x) * 3;
          out[o] = c[0] as number;
          out[o + 1] = c[1] as number;
          out[o + 2] = c[2] as number;
        }
      }
    }
  }
  return out;
}

/** A token-compressed insertion bundle, or why there is none. */
export type CompressedBundle = { tokens: number; dir: string; recipe: string } | { tokens: number; error: string };

/**
 * The insertion twin with a random Q-Former-style connector giving `tokens` image tokens per
 * frame (`python3 -m tools.casa_model compressed`, benchmark B1), built once into the OS temp
 * dir: keyed by the source bundle's files and the tool's source, never committed.
 */
export async function compressedBundle(root: string, insertion: string, tokens: number, log: (l: string) => void): Promise<CompressedBundle> {
  const tool = path.join(root, 'tools', 'casa_model', 'compressed.py');
  if (!existsSync(tool) || pythonMissing(pythonInterpreter())) return { tokens, error: `no ${existsSync(tool) ? pythonInterpreter() : tool}` };
  const h = createHash('sha256').update(readFileSync(tool));
  for (const f of ['casa.json', 'vision.onnx', 'decoder.onnx', 'tokenizer.json']) h.update(readFileSync(path.join(insertion, f)));
  const dir = path.join(cacheDir(), `compressed-${path.basename(insertion)}-${h.digest('hex').slice(0, 12)}-q${tokens}`);
  const recipe = `PYTHONPATH=. ${pythonInterpreter()} -m tools.casa_model compressed --tokens ${tokens} --bundle ${path.relative(root, insertion) || insertion} --out DIR`;
  if (existsSync(path.join(dir, 'casa.json'))) return { tokens, dir, recipe };
  log(`building a ${tokens}-token compressed insertion bundle (${recipe})`);
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    await run(pythonInterpreter(), ['-m', 'tools.casa_model', 'compressed', '--tokens', String(tokens), '--bundle', insertion, '--out', tmp, '--threads', '1'], {
      cwd: root,
      env: { ...process.env, PYTHONPATH: root },
      maxBuffer: 1 << 20,
    });
    renameSync(tmp, dir);
    return { tokens, dir, recipe };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(path.join(dir, 'casa.json'))) return { tokens, dir, recipe }; // another bench process built it meanwhile
    return { tokens, error: (err as Error).message.split('\n').slice(0, 3).join(' ') };
  }
}

export interface Clip {
  path: string;
  seconds: number;
  width: number;
  height: number;
  fps: number;
  codec: string;
  command: string;
}

export interface ClipSpec {
  seconds: number;
  width: number;
  height: number;
  fps: number;
  name: string;
  /** Container (default mp4; ts: MPEG-TS, for the live server). */
  format?: 'mp4' | 'ts';
  /**
   * Camera-like picture: scaled smoothly (bicubic) with this much temporal noise (ffmpeg
   * noise=alls=N:allf=t) instead of nearest-neighbour blocks, which would make a large clip
   * unrealistically cheap to decode.
   */
  noise?: number;
}

/**
 * Encodes a video clip from a frame stream: the 2-fps frames held and re-timed to `fps`,
 * scaled (nearest neighbour, or smoothly with noise) to `width`×`height`, looped to `seconds`. Cached.
 */
export async function encodeClip(stream: FrameStream, o: ClipSpec, log: (l: string) => void): Promise<Clip> {
  const ff = await resolveFfmpeg();
  const base = path.join(
    cacheDir(),
    `${o.name}-${path.basename(path.dirname(stream.framesPath))}-${o.width}x${o.height}-${o.fps}fps-${o.seconds}s${o.noise ? `-noise${o.noise}` : ''}`,
  );
  const ext = o.format ?? 'mp4';
  const scale = o.noise ? `scale=${o.width}:${o.height}:flags=bicubic,fps=${o.fps},noise=alls=${o.noise}:allf=t` : `scale=${o.width}:${o.height}:flags=neighbor,fps=${o.fps}`;
  const streamSeconds = stream.frames / 2;
  const loops = Math.max(0, Math.ceil(o.seconds / streamSeconds) - 1);
  for (const codec of ['libx264', 'mpeg4']) {
    const out = `${base}-${codec}.${ext}`;
    const args = [
      '-hide_banner', '-loglevel', 'error', '-y',
      '-stream_loop', String(loops),
      '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${stream.width}x${stream.height}`, '-framerate', '2', '-i', stream.framesPath,
      '-vf', scale,
      '-t', String(o.seconds),
      '-c:v', codec,
      ...(codec === 'libx264' ? ['-preset', 'veryfast', '-g', String(o.fps * 2)] : ['-q:v', '4', '-g', String(o.fps * 2)]),
      '-pix_fmt', 'yuv420p', '-an', ...(ext === 'ts' ? ['-f', 'mpegts'] : []), `${out}.tmp.${ext}`,
    ];
    const command = `ffmpeg ${args.join(' ')}`;
    if (existsSync(out)) return { path: out, seconds: o.seconds, width: o.width, height: o.height, fps: o.fps, codec, command };
    try {
      log(`encoding ${path.basename(out)} (${o.seconds} s, ${o.width}x${o.height} @ ${o.fps} fps, ${codec})`);
      await run(ff.ffmpegPath, args, { maxBuffer: 1 << 20 });
      renameSync(`${out}.tmp.${ext}`, out);
      return { path: out, seconds: o.seconds, width: o.width, height: o.height, fps: o.fps, codec, command };
    } catch (err) {
      if (codec === 'mpeg4') throw err;
    }
  }
  throw new Error('unreachable');
}

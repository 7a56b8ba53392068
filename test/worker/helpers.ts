/**
 * Helpers of the worker engine's tests: real workers (tools/casa_worker on this machine's
 * Python and PyTorch) serving the embedded casa-tiny bundle, and frames of the example clips.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EngineFrame } from '../../src/engine.js';

export { sleep, until } from '../server/helpers.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CASA_TINY = path.join(ROOT, 'models', 'casa-tiny');
export const TORCH_REF = `torch:${CASA_TINY}`;
export const FIXTURES = path.join(ROOT, 'test', 'worker', 'fixtures');
export const FFMPEG = process.env.FFMPEG_PATH || 'ffmpeg';

/** The frames of an example clip as ingest delivers them to casa-tiny (2 fps, 64x64 rgb24). */
export function clipFrames(name: string, count?: number): EngineFrame[] {
  const raw = execFileSync(FFMPEG, ['-v', 'error', '-i', path.join(ROOT, 'examples', `${name}.mp4`), '-vf', 'fps=2,scale=64:64', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], {
    maxBuffer: 64 << 20,
  });
  const size = 64 * 64 * 3;
  const n = Math.min(count ?? Infinity, Math.floor(raw.length / size));
  return Array.from({ length: n }, (_, i) => ({
    index: i,
    ptsSeconds: i / 2,
    receivedAt: Date.now(),
    width: 64,
    height: 64,
    rgb: raw.subarray(i * size, (i + 1) * size),
  }));
}

/** Whether a process is alive (signal 0). */
export function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

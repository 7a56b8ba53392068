/** Test media, encoded by ffmpeg into a temp dir (small and short, to keep the suite fast). */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const FFMPEG = process.env.FFMPEG_PATH || 'ffmpeg';
export const FFPROBE = process.env.FFPROBE_PATH || 'ffprobe';

export function tempDir(prefix = 'casa-ingest-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function ffmpeg(args: string[]): Promise<void> {
  await run(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', ...args], { maxBuffer: 16 << 20 });
}

export async function probeJson(file: string): Promise<any> {
  const { stdout } = await run(FFPROBE, ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', file]);
  return JSON.parse(stdout);
}

/**
 * H.264 that encodes fast, yuv420p; with `gop`, a keyframe every `gop` frames (a short GOP lets
 * a player that joins mid-stream decode soon).
 */
export function x264Args(gop?: number): string[] {
  return ['-c:v', 'libx264', '-preset', 'ultrafast', ...(gop === undefined ? [] : ['-g', String(gop)]), '-pix_fmt', 'yuv420p'];
}

/** testsrc2 clip: `codecArgs` pick the codec, `filter` may follow the source. */
export async function makeClip(
  out: string,
  o: { size: string; rate: number; seconds: number; codecArgs: string[]; filter?: string; extra?: string[] },
): Promise<string> {
  const src = `testsrc2=size=${o.size}:rate=${o.rate}:duration=${o.seconds}${o.filter ? `,${o.filter}` : ''}`;
  await ffmpeg(['-f', 'lavfi', '-i', src, ...o.codecArgs, ...(o.extra ?? []), out]);
  return out;
}

/** Top half red, bottom half blue: shows the orientation of a frame. */
export async function makeRedOverBlue(out: string, o: { width: number; height: number; seconds: number; extra?: string[] }): Promise<string> {
  const half = `s=${o.width}x${o.height / 2}:r=25:d=${o.seconds}`;
  await ffmpeg([
    '-filter_complex',
    `color=c=red:${half}[a];color=c=blue:${half}[b];[a][b]vstack,format=yuv420p[v]`,
    '-map',
    '[v]',
    '-c:v',
    'libx264',
    '-preset',
    'ultrafast',
    '-g',
    '25',
    ...(o.extra ?? []),
    out,
  ]);
  return out;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts a helper process (server, publisher); remembered so the test can tell it from ffmpeg children of the source. */
export class Helpers {
  readonly procs = new Set<ChildProcess>();
  readonly pids = new Set<number>();

  spawn(cmd: string, args: string[], opts: { log?: boolean } = {}): ChildProcess {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', opts.log ? 'inherit' : 'ignore'] });
    this.procs.add(p);
    if (p.pid) this.pids.add(p.pid);
    p.once('exit', () => this.procs.delete(p));
    return p;
  }

  ffmpeg(args: string[]): ChildProcess {
    return this.spawn(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-nostdin', ...args]);
  }

  async kill(p: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    try {
      p.kill('SIGCONT');
    } catch {
      /* ignore */
    }
    p.kill(signal);
    await gone;
  }

  async killAll(): Promise<void> {
    await Promise.all([...this.procs].map((p) => this.kill(p)));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` every 50 ms until it holds or `timeoutMs` passes (then throws `what`). */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

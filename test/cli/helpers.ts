/**
 * Helpers of the CLI tests: they run the real built CLI (`node bin/casa-live.js …`, after
 * tsc) on clips that ffmpeg encodes into a temp dir, with the dev model bundle (random
 * weights, the real format: its captions are garbage, but every format, exit-code and
 * signal test works with it).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll } from 'vitest';
import { ensureBuilt } from '../server/helpers.js';

export { ensureBuilt };

const run = promisify(execFile);
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(REPO_ROOT, 'bin', 'casa-live.js');
export const DEV_MODEL = path.join(REPO_ROOT, 'test', 'fixtures', 'bundles', 'dev-casa');
export const DEV_INSERTION = path.join(REPO_ROOT, 'test', 'fixtures', 'bundles', 'dev-insertion');
export const FFMPEG = process.env.FFMPEG_PATH || 'ffmpeg';
export const FFPROBE = process.env.FFPROBE_PATH || 'ffprobe';

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Written to the CLI's stdin (then closed). */
  input?: string | Buffer;
}

/** The environment the CLI runs in: no terminal colours, no model override unless given. */
function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  if (!('CASA_LIVE_MODEL' in extra)) delete env.CASA_LIVE_MODEL;
  return env;
}

/** Starts the CLI; the caller reads its output and waits for `exited`. */
export function spawnCli(args: string[], opts: CliOptions = {}): { child: ChildProcess; exited: Promise<CliResult>; stdout: () => string; stderr: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: cliEnv(opts.env),
    stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const exited = new Promise<CliResult>((resolve) =>
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return spawnCli(args, opts).exited;
}

export function tempDir(prefix = 'casa-cli-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A test clip: its length in seconds, or its length and frame size (default 160x120). */
export type ClipSpec = number | { seconds: number; size: string };

/**
 * The setup the CLI test files share: a temp dir (removed after the file's tests) and, before
 * them, the CLI built and the clips made in the dir (`{ 'clip.mp4': 6 }`: a 6-second clip.mp4).
 * `clip(name)` is a clip's path (the file exists once the tests run).
 */
export function setupCliTests(prefix: string, clips: Record<string, ClipSpec> = {}): { dir: string; clip: (name: string) => string } {
  const tmp = tempDir(prefix);
  beforeAll(async () => {
    await ensureBuilt();
    await Promise.all(
      Object.entries(clips).map(([name, spec]) =>
        typeof spec === 'number' ? makeClip(path.join(tmp.dir, name), spec) : makeClip(path.join(tmp.dir, name), spec.seconds, spec.size),
      ),
    );
  }, 120_000);
  afterAll(() => tmp.cleanup());
  const clip = (name: string): string => {
    if (!(name in clips)) throw new Error(`no clip ${name} in this test file's setup`);
    return path.join(tmp.dir, name);
  };
  return { dir: tmp.dir, clip };
}

export async function ffmpeg(args: string[]): Promise<void> {
  await run(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', ...args], { maxBuffer: 16 << 20 });
}

/** A testsrc2 H.264 clip of `seconds` seconds (10 fps). */
export async function makeClip(out: string, seconds: number, size = '160x120'): Promise<string> {
  await ffmpeg([
    '-f',
    'lavfi',
    '-i',
    `testsrc2=size=${size}:rate=10:duration=${seconds}`,
    '-c:v',
    'libx264',
    '-preset',
    'ultrafast',
    '-pix_fmt',
    'yuv420p',
    out,
  ]);
  return out;
}

export async function probeJson(file: string, extra: string[] = ['-show_format', '-show_streams']): Promise<any> {
  const { stdout } = await run(FFPROBE, ['-v', 'error', '-print_format', 'json', ...extra, file], { maxBuffer: 16 << 20 });
  return JSON.parse(stdout);
}

/** Re-muxes a subtitle file through ffmpeg (it must parse it); resolves with what ffmpeg wrote. */
export async function ffmpegReadsSubtitles(file: string, format: 'srt' | 'webvtt'): Promise<string> {
  const { stdout } = await run(FFMPEG, ['-hide_banner', '-v', 'error', '-nostdin', '-i', file, '-f', format, 'pipe:1'], { maxBuffer: 16 << 20 });
  return stdout;
}

/** Subtitle packets as ffprobe reads them: start and end in seconds. */
export async function subtitlePackets(file: string): Promise<Array<{ start: number; end: number }>> {
  const j = await probeJson(file, ['-show_packets']);
  return (j.packets as Array<{ pts_time: string; duration_time: string }>).map((p) => ({
    start: Number(p.pts_time),
    end: Number(p.pts_time) + Number(p.duration_time),
  }));
}

/** The captions the CLI writes for a clip (`caption CLIP ...args --jsonl`), in frame order; stderr must stay empty. */
export async function clipCaptions(clip: string, args: string[] = [], timeoutMs = 120_000): Promise<{ code: number | null; stderr: string; captions: string[] }> {
  const tmp = tempDir();
  try {
    const jsonl = path.join(tmp.dir, 'out.jsonl');
    const r = await runCli(['caption', clip, ...args, '--jsonl', jsonl, '--quiet'], { timeoutMs });
    const events = r.code === 0 ? (readJsonl(jsonl) as Array<{ type: string; frame: number; text: string }>) : [];
    const captions = events
      .filter((e) => e.type === 'caption')
      .sort((a, b) => a.frame - b.frame)
      .map((e) => e.text);
    return { code: r.code, stderr: r.stderr, captions };
  } finally {
    tmp.cleanup();
  }
}

export function readJsonl(file: string): any[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

/** Processes (any parent) whose command line mentions `needle`: ffmpeg children left behind. */
export function processesMentioning(needle: string): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (cmd.includes(needle) && !cmd.includes('vitest')) out.push({ pid: Number(name), cmd });
  }
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

// eslint-disable-next-line no-control-regex
export const CONTROL_CODES = /[\x00-\x08\x0b-\x1f\x7f]/;

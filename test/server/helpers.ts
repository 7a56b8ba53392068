import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import WebSocket from 'ws';

export const TOKEN = 'viewer-token-0123456789abcdef';
export const ADMIN = 'admin-token-0123456789abcdef';

export async function tmpDir(prefix = 'casa-serve-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Writes a serve config (YAML) with test defaults; returns its path. */
export async function writeConfig(dir: string, overrides: Record<string, unknown> = {}): Promise<string> {
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    auth: { tokens: [TOKEN], adminTokens: [ADMIN] },
    dataDir: path.join(dir, 'data'),
    log: { level: 'silent' },
    captionLog: { fsync: false },
    defaults: { restart: { initialDelayMs: 100, maxDelayMs: 1000 } },
    streams: [],
    ...overrides,
  };
  const file = path.join(dir, 'casa-live.yaml');
  await writeFile(file, stringify(config));
  return file;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls until fn returns a truthy value (bounded). */
export async function until<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export type Msg = { type: string; stream?: string; seq?: number; [k: string]: unknown };

/** A real WebSocket client that records every message. */
export class TestClient {
  readonly messages: Msg[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private listeners: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(JSON.parse(data.toString()) as Msg);
      for (const l of this.listeners) l();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  static connect(port: number, opts: { token?: string | null; headers?: Record<string, string>; query?: string } = {}): Promise<TestClient> {
    const token = opts.token === undefined ? TOKEN : opts.token;
    const q = opts.query ?? (token !== null ? `?token=${encodeURIComponent(token)}` : '');
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws${q}`, { headers: opts.headers ?? {} });
    const client = new TestClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode })));
      ws.once('error', reject);
    });
  }

  send(msg: unknown): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  of(type: string, stream?: string): Msg[] {
    return this.messages.filter((m) => m.type === type && (stream === undefined || m.stream === stream));
  }

  async waitFor(pred: (msgs: Msg[]) => boolean, timeoutMs = 10_000, what = 'messages'): Promise<void> {
    if (pred(this.messages)) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${this.messages.length} messages: ${JSON.stringify(this.messages.slice(-5))}`));
      }, timeoutMs);
      const check = (): void => {
        if (pred(this.messages)) {
          clearTimeout(timer);
          this.listeners = this.listeners.filter((l) => l !== check);
          resolve();
        }
      };
      this.listeners.push(check);
    });
  }

  /** Subscribes and waits for the ack. */
  async subscribe(streams: string[], extra: Record<string, unknown> = {}): Promise<Msg> {
    const before = this.of('subscribed').length;
    this.send({ type: 'subscribe', streams, ...extra });
    await this.waitFor((m) => m.filter((x) => x.type === 'subscribed').length > before, 5000, 'subscribed');
    return this.of('subscribed')[before]!;
  }

  lastSeq(stream: string): number {
    let s = 0;
    for (const m of this.messages) if (m.stream === stream && typeof m.seq === 'number') s = Math.max(s, m.seq);
    return s;
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await Promise.race([this.closed, sleep(2000)]);
    this.ws.terminate();
  }
}

/** Asserts per-stream seq order with no duplicates in what a client received. */
export function seqsOf(msgs: Msg[], stream: string, type?: string): number[] {
  return msgs.filter((m) => m.stream === stream && typeof m.seq === 'number' && (type === undefined || m.type === type)).map((m) => m.seq as number);
}

/** Makes a small test video (5 s, 10 fps, 160x120) with ffmpeg; returns its path. */
export async function makeClip(dir: string, ffmpeg: string): Promise<string> {
  const { execFile } = await import('node:child_process');
  const file = path.join(dir, 'clip.mp4');
  await new Promise<void>((resolve, reject) =>
    execFile(ffmpeg, ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10', '-t', '5', '-c:v', 'mpeg4', '-q:v', '5', file], (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  return file;
}

export async function getJson(url: string, token?: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { ...((init.headers as Record<string, string>) ?? {}) };
  if (token) headers.authorization = `Bearer ${token}`;
  if (init.body) headers['content-type'] = 'application/json';
  const res = await fetch(url, { ...init, headers });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body };
}

// ---- process-level helpers: the built daemon (dist/) run by fixtures/daemon.mjs ----------

export const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
export const DAEMON_FIXTURE = path.join(REPO_ROOT, 'test', 'server', 'fixtures', 'daemon.mjs');

async function newestMtime(dir: string): Promise<number> {
  const { readdir, stat } = await import('node:fs/promises');
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, await newestMtime(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  return newest;
}

/** Builds dist/ with tsc when it is older than src/ (npm test builds first anyway). */
export async function ensureBuilt(): Promise<void> {
  const { stat, mkdir, rmdir } = await import('node:fs/promises');
  const { spawnSync } = await import('node:child_process');
  const out = path.join(REPO_ROOT, 'dist', 'server', 'index.js');
  const fresh = async (): Promise<boolean> => {
    try {
      return (await stat(out)).mtimeMs >= (await newestMtime(path.join(REPO_ROOT, 'src')));
    } catch {
      return false;
    }
  };
  if (await fresh()) return;
  // Two test files may get here at once: one builds, the other waits.
  const lock = path.join(os.tmpdir(), `casa-live-build-${Buffer.from(REPO_ROOT).toString('hex').slice(-32)}.lock`);
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`build lock ${lock} held for 2 minutes`);
      await sleep(250);
    }
  }
  try {
    if (await fresh()) return;
    const tsc = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    // tsc emits even when another part of the tree has type errors; dist/server is what matters.
    spawnSync(process.execPath, [tsc, '-p', path.join(REPO_ROOT, 'tsconfig.json')], { stdio: 'ignore', timeout: 110_000 });
    await stat(out);
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
}

export interface Daemon {
  child: import('node:child_process').ChildProcess;
  lines: Array<Record<string, unknown>>;
  port: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

/** Starts the built daemon with the stand-in pipeline; resolves once it listens. */
export async function startDaemon(configPath: string, args: string[] = []): Promise<Daemon> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [DAEMON_FIXTURE, configPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  let err = '';
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      if (!line.trim()) continue;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ raw: line });
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const listening = await Promise.race([
    until(() => lines.find((l) => l.fixture === 'listening'), 20_000, 'the daemon to listen'),
    exited.then((e) => {
      throw new Error(`daemon exited early (${e.code ?? e.signal}): ${err}`);
    }),
  ]);
  return { child, lines, port: listening.port as number, exited, stderr: () => err };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Debian's chromium, headless, as the overlay tests drive it (playwright-core). */
export async function launchChromium(): Promise<import('playwright-core').Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CASA_LIVE_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

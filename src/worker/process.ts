/**
 * One model worker process (tools/casa_worker): started, handshaken, watched, stopped.
 *
 * casa-live listens on a Unix socket in a private temporary directory (mode 0700) and
 * passes its path to the worker, which connects: the protocol never shares a pipe with the
 * worker's own stdout/stderr (third-party libraries print there), which go to casa-live's
 * log instead. Lifecycle:
 *
 *   starting ──hello (connectTimeoutMs) … ready (loadTimeoutMs)──▶ ready ──exit / kill──▶ exited
 *   starting ──fatal, exit, timeout, protocol error──▶ exited (start() rejects with one sentence)
 *
 * No orphans: a worker is SIGKILLed when it is stopped, when it breaks the protocol, when
 * casa-live exits; and the worker exits by itself when the socket closes or casa-live dies.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ModelError } from '../errors.js';
import { clip, OUTPUT_LINE_CHARS } from '../logger.js';
import { packageRoot, pythonInterpreter } from '../install.js';
import type { IngestLogger } from '../ingest/types.js';
import {
  FrameReader,
  PROTOCOL_VERSION,
  WorkerProtocolError,
  encodeRequest,
  workerError,
  type WorkerMessage,
  type WorkerModelInfo,
  type WorkerRequest,
} from './protocol.js';

export type WorkerAdapter = 'torch' | 'hf';

export interface WorkerOptions {
  /** Python interpreter (default: CASA_LIVE_PYTHON, else /usr/bin/python3 when present, else python3 on PATH). */
  python?: string;
  /** Where the model runs (default auto: CUDA when torch sees a GPU). */
  device?: 'auto' | 'cpu' | 'cuda';
  /** torch intra-op threads (default: torch's own choice). */
  threads?: number;
  /** The worker must connect and say hello within this (default 60 s: importing torch is slow on a busy machine). */
  connectTimeoutMs?: number;
  /** …and have its model loaded within this (default 15 min: a first download from Hugging Face). */
  loadTimeoutMs?: number;
  /** A frame must be captioned within this (default 120 s); a worker that does not answer is killed. */
  frameTimeoutMs?: number;
  /** Other requests (open, close, stats, ping) within this (default 30 s). */
  requestTimeoutMs?: number;
  /** Health pings while the worker is up (default every 10 s). */
  pingIntervalMs?: number;
  logger?: IngestLogger;
  env?: NodeJS.ProcessEnv;
  /** Extra arguments for the worker's command line (tests). */
  extraArgs?: string[];
}

export interface WorkerLaunch {
  adapter: WorkerAdapter;
  /** A bundle directory (torch), or a repo id or directory (hf). */
  model: string;
}

export const WORKER_DEFAULTS = {
  connectTimeoutMs: 60_000,
  loadTimeoutMs: 15 * 60_000,
  frameTimeoutMs: 120_000,
  requestTimeoutMs: 30_000,
  pingIntervalMs: 10_000,
} as const;

const FATAL_PREFIX = 'CASA_WORKER_FATAL ';
const STDERR_TAIL = 20;
const silent: IngestLogger = { info() {}, warn() {}, error() {}, debug() {} };

/** Workers alive in this process (and their socket directories): SIGKILLed if casa-live exits without stopping them. */
const live = new Map<ChildProcess, string>();
process.once('exit', () => {
  for (const [child, dir] of live) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

type State = 'starting' | 'ready' | 'exited';

export class WorkerProcess {
  private state: State = 'starting';
  private readonly child: ChildProcess;
  private readonly dir: string;
  private server: Server | undefined;
  private socket: Socket | undefined;
  private readonly reader = new FrameReader();
  private readonly log: IngestLogger;
  private readonly stderrTail: string[] = [];
  private fatal: { code: string; message: string } | undefined;
  private failure: Error | undefined;
  private helloSeen = false;
  private startTimer: NodeJS.Timeout | undefined;
  private settleStart: ((err?: Error) => void) | undefined;
  private modelInfo: WorkerModelInfo | undefined;
  /** Messages after `ready` (the client routes them). */
  onMessage: (m: WorkerMessage) => void = () => undefined;
  /** The worker ended after `ready` (crash, kill, protocol error): the reason, as one sentence. */
  onExit: (err: Error) => void = () => undefined;
  /** Resolves once the process has exited and its temporary directory is removed. */
  readonly exited: Promise<void>;

  private constructor(
    readonly launch: WorkerLaunch,
    private readonly opts: WorkerOptions,
  ) {
    this.log = opts.logger ?? silent;
    this.dir = mkdtempSync(path.join(tmpdir(), 'casa-live-worker-'));
    chmodSync(this.dir, 0o700);
    const python = opts.python ?? pythonInterpreter(opts.env);
    const env = opts.env ?? process.env;
    const root = packageRoot();
    this.child = spawn(python, this.args(path.join(this.dir, 'w.sock')), {
      cwd: root,
      env: { ...env, PYTHONPATH: [root, env.PYTHONPATH].filter(Boolean).join(path.delimiter), PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.set(this.child, this.dir);
    this.exited = new Promise((resolve) => this.child.once('close', () => resolve()));
    this.child.once('error', (err: NodeJS.ErrnoException) => this.onSpawnError(err, python));
    this.child.once('close', (code, signal) => this.onClose(code, signal));
    this.pipeLines(this.child.stdout, (line) => this.log.info({ worker: this.child.pid }, clip(line, OUTPUT_LINE_CHARS)));
    this.pipeLines(this.child.stderr, (line) => this.onStderr(line));
  }

  /** Starts a worker and resolves once its model is loaded (`ready`); rejects with one sentence otherwise. */
  static async start(launch: WorkerLaunch, opts: WorkerOptions = {}): Promise<WorkerProcess> {
    const w = new WorkerProcess(launch, opts);
    await w.handshake();
    return w;
  }

  get info(): WorkerModelInfo {
    if (!this.modelInfo) throw new ModelError('the model worker is not ready');
    return this.modelInfo;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  send(req: WorkerRequest): void {
    if (this.state !== 'ready' || !this.socket) throw this.failure ?? new ModelError('the model worker is not running.');
    this.socket.write(encodeRequest(req));
  }

  /** Keeps casa-live's event loop alive (or not) for this worker: only while requests are pending. */
  hold(busy: boolean): void {
    const handles = [this.child, this.socket, this.child.stdout, this.child.stderr] as Array<{ ref(): unknown; unref(): unknown } | null | undefined>;
    for (const h of handles) {
      if (busy) h?.ref();
      else h?.unref();
    }
  }

  /** Ends the worker at once (SIGKILL); `reason` becomes the error its pending requests get. */
  kill(reason: Error): void {
    this.end(reason);
    this.child.kill('SIGKILL');
  }

  /** Asks the worker to exit (shutdown, then the socket closes); SIGKILL after `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.state !== 'exited') {
      this.failure ??= new ModelError('the model worker was stopped.');
      try {
        this.socket?.end(encodeRequest({ t: 'shutdown' }));
      } catch {
        /* already closed */
      }
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    await this.exited;
  }

  // ---------------------------------------------------------------- start-up

  private args(socketPath: string): string[] {
    const o = this.opts;
    return [
      '-m', 'tools.casa_worker', '--socket', socketPath, '--adapter', this.launch.adapter, '--model', this.launch.model,
      '--device', o.device ?? 'auto', ...(o.threads ? ['--threads', String(o.threads)] : []), ...(o.extraArgs ?? []),
    ];
  }

  private handshake(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.settleStart = (err) => {
        this.settleStart = undefined;
        clearTimeout(this.startTimer);
        if (err) reject(err);
        else resolve();
      };
      const connectMs = this.opts.connectTimeoutMs ?? WORKER_DEFAULTS.connectTimeoutMs;
      this.armStartTimer(connectMs, `did not connect within ${connectMs / 1000} s`);
      this.listen(path.join(this.dir, 'w.sock'));
    });
  }

  private armStartTimer(ms: number, what: string): void {
    clearTimeout(this.startTimer);
    this.startTimer = setTimeout(() => this.failStart(new ModelError(`The model worker (${this.describe()}) ${what}; it was stopped.`)), ms);
  }

  private listen(socketPath: string): void {
    const server = createServer((socket) => {
      if (this.socket) {
        socket.destroy(); // one connection: the worker's
        return;
      }
      this.socket = socket;
      server.close();
      rmSync(socketPath, { force: true });
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.on('error', () => undefined);
      // The worker exits when the connection ends; give it a moment, so that its exit status
      // and last stderr lines (read until the process closes) say why.
      socket.on('close', () => setTimeout(() => this.child.kill('SIGKILL'), 1000).unref());
    });
    this.server = server;
    server.on('error', (err) => this.failStart(new ModelError(`Cannot create the model worker's socket ${socketPath}: ${err.message}.`)));
    server.listen(socketPath);
  }

  private onData(chunk: Buffer): void {
    let messages: WorkerMessage[];
    try {
      messages = this.reader.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    for (const m of messages) {
      if (this.state === 'ready') this.onMessage(m);
      else if (this.state === 'starting') this.onStartMessage(m);
    }
  }

  private onStartMessage(m: WorkerMessage): void {
    if (m.t === 'hello' && !this.helloSeen) {
      this.helloSeen = true;
      if (m.protocol !== PROTOCOL_VERSION) {
        this.failStart(new ModelError(`The model worker speaks protocol ${m.protocol} and casa-live speaks ${PROTOCOL_VERSION}; use the tools/casa_worker of this casa-live installation.`));
        return;
      }
      const loadMs = this.opts.loadTimeoutMs ?? WORKER_DEFAULTS.loadTimeoutMs;
      this.armStartTimer(loadMs, `did not load its model within ${loadMs / 1000} s`);
      this.log.info({ worker: m.pid, python: m.python, torch: m.torch, cuda: m.cuda }, 'model worker connected; loading the model');
    } else if (m.t === 'ready' && this.helloSeen) {
      this.modelInfo = m.model;
      this.state = 'ready';
      this.settleStart?.();
    } else if (m.t === 'fatal') {
      this.fatal = { code: m.code, message: m.message };
    } else {
      this.fail(new WorkerProtocolError(`The model worker sent "${m.t}" before it was ready: not the casa-live worker protocol.`));
    }
  }

  // ---------------------------------------------------------------- ends

  private failStart(err: Error): void {
    this.kill(err);
  }

  /** A protocol violation or a hung worker: kill it; everything pending gets `err`. */
  fail(err: Error): void {
    if (this.state === 'exited') return;
    this.log.error({ worker: this.child.pid, err: err.message }, 'model worker failed; stopping it');
    this.kill(err);
  }

  private onSpawnError(err: NodeJS.ErrnoException, python: string): void {
    const message =
      err.code === 'ENOENT'
        ? `Python was not found at ${clip(python)}; install Python 3 with PyTorch, or set CASA_LIVE_PYTHON to its path.`
        : `Cannot start the model worker with ${clip(python)}: ${err.message}.`;
    this.failStart(new ModelError(message));
  }

  private onClose(code: number | null, signal: NodeJS.Signals | null): void {
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const last = this.stderrTail.filter((l) => l.trim() !== '').slice(-1)[0];
    const when = this.state === 'starting' ? ' before it was ready' : ' unexpectedly';
    const err = this.fatal
      ? workerError(this.fatal.code, this.fatal.message)
      : new ModelError(`The model worker (${this.describe()}) ${how}${when}${last ? `: ${last.trim()}` : ''}.`, { details: this.stderrTail.slice() });
    this.end(err);
    live.delete(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The one way to `exited` (idempotent): the first reason given is kept and reported once. */
  private end(reason: Error): void {
    if (this.state === 'exited') return;
    const wasStarting = this.state === 'starting';
    this.state = 'exited';
    this.failure ??= reason;
    this.server?.close();
    this.socket?.destroy();
    clearTimeout(this.startTimer);
    if (wasStarting) this.settleStart?.(this.failure);
    else this.onExit(this.failure);
  }

  private onStderr(line: string): void {
    if (line.startsWith(FATAL_PREFIX)) {
      try {
        const f = JSON.parse(line.slice(FATAL_PREFIX.length)) as { code?: unknown; message?: unknown };
        if (typeof f.code === 'string' && typeof f.message === 'string') this.fatal ??= { code: f.code, message: f.message };
        return;
      } catch {
        /* an ordinary line after all */
      }
    }
    // Kept (for the error's details) and logged clipped: third-party lines can be of any length.
    const kept = clip(line, OUTPUT_LINE_CHARS);
    this.stderrTail.push(kept);
    if (this.stderrTail.length > STDERR_TAIL) this.stderrTail.shift();
    this.log.info({ worker: this.child.pid }, kept);
  }

  private pipeLines(stream: NodeJS.ReadableStream | null, each: (line: string) => void): void {
    if (!stream) return;
    let pending = '';
    stream.setEncoding('utf8');
    stream.on('data', (text: string) => {
      const lines = (pending + text).split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) each(l.replace(/\r$/, ''));
    });
    stream.on('end', () => {
      if (pending) each(pending);
    });
  }

  private describe(): string {
    return `${this.launch.adapter}:${clip(this.launch.model)}`;
  }
}

/**
 * A model served by a worker process (the worker engine, DESIGN §8): the same model API as
 * the ONNX engine's Model, over tools/casa_worker. One worker loads the model once and
 * serves every session of this model.
 *
 * Supervision (one declared state):
 *   up ──the worker exits, hangs or breaks the protocol──▶ down   (its sessions fail with the reason)
 *   down ──openSession: wait backoffDelay(failures), start a new worker──▶ up   (a failed start stays down)
 *   up / down ──release()──▶ released   (the worker is stopped; no process is left behind)
 * The daemon's streams fail with their session and are restarted by their runner, so they
 * resume on the new worker with new sessions. The failure count goes back to 0 once a frame
 * is captioned again.
 */
import { UsageError } from '../errors.js';
import { backoffDelay } from '../ingest/index.js';
import type { Fit } from '../ingest/types.js';
import { resolveSessionOptions, type SessionOptions } from '../session/caption-session.js';
import { WorkerClient } from './client.js';
import { sessionDefaults, wireOptions } from './options.js';
import { WorkerProcess, type WorkerLaunch, type WorkerOptions } from './process.js';
import type { WorkerModelInfo } from './protocol.js';
import { WorkerSession } from './session.js';

/** Restart backoff of a worker that died: from 1 s, doubling, at most 30 s. */
const RESTART_INITIAL_MS = 1000;
const RESTART_MAX_MS = 30_000;

type State = 'up' | 'down' | 'released';

export class WorkerModel {
  readonly runtime = 'worker' as const;
  readonly info: WorkerModelInfo;
  private state: State = 'up';
  private client: WorkerClient;
  private failures = 0;
  private restarting: Promise<void> | undefined;
  private readonly sessions = new Set<WorkerSession>();

  private constructor(
    readonly launch: WorkerLaunch,
    private readonly opts: WorkerOptions,
    proc: WorkerProcess,
  ) {
    this.info = proc.info;
    this.client = this.connect(proc);
  }

  /** Starts the worker and waits until its model is loaded; a failure is one ModelError sentence. */
  static async load(launch: WorkerLaunch, opts: WorkerOptions = {}): Promise<WorkerModel> {
    return new WorkerModel(launch, opts, await WorkerProcess.start(launch, opts));
  }

  get name(): string {
    return this.info.name;
  }

  get fusion(): 'casa' | 'insertion' {
    return this.info.fusion;
  }

  get image(): { width: number; height: number; fit: Fit } {
    const { width, height, fit } = this.info.image;
    return { width, height, fit };
  }

  get fps(): number {
    return this.info.fps;
  }

  get acceptsPrompt(): boolean {
    return this.info.acceptsPrompt;
  }

  /** The worker's process id (diagnostics, tests). */
  get pid(): number | undefined {
    return this.client.proc.pid;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Opens a session on the worker (starting a new worker first if the last one died). */
  async openSession(opts: SessionOptions = {}): Promise<WorkerSession> {
    this.assertLive();
    const options = resolveSessionOptions(sessionDefaults(this.info), this.info.promptTokens, this.info.frameOpeningTokens, opts);
    await this.ensureUp();
    const client = this.client;
    const opened = await client.request({ t: 'open', options: wireOptions(options, opts) });
    const session: WorkerSession = new WorkerSession({
      client,
      id: opened.session,
      fusion: this.info.fusion,
      options,
      onFrame: () => (this.failures = 0),
      onClose: () => this.sessions.delete(session),
    });
    if (this.state === 'released') {
      session.close();
      this.assertLive();
    }
    this.sessions.add(session);
    return session;
  }

  /** The worker's own figures: sessions, frames captioned, uptime, peak memory. */
  async workerStats(): Promise<Record<string, unknown>> {
    this.assertLive();
    return this.client.request({ t: 'stats' });
  }

  /** Closes every session and stops the worker. Idempotent. */
  async release(): Promise<void> {
    if (this.state === 'released') return;
    this.state = 'released';
    for (const s of [...this.sessions]) s.close();
    this.client.close();
    await this.client.proc.stop();
  }

  private connect(proc: WorkerProcess): WorkerClient {
    const client = new WorkerClient(proc, this.opts);
    const exitHandler = proc.onExit;
    proc.onExit = (err) => {
      exitHandler(err);
      if (this.state !== 'up' || this.client !== client) return;
      this.state = 'down';
      this.failures++;
      this.opts.logger?.error({ worker: proc.pid, err: err.message }, 'model worker ended; its sessions failed');
    };
    return client;
  }

  private ensureUp(): Promise<void> {
    if (this.state === 'up') return Promise.resolve();
    this.restarting ??= this.restart().finally(() => (this.restarting = undefined));
    return this.restarting;
  }

  private async restart(): Promise<void> {
    const delay = backoffDelay(this.failures, RESTART_INITIAL_MS, RESTART_MAX_MS);
    this.opts.logger?.info({ model: this.info.name, delayMs: delay }, 'restarting the model worker');
    await new Promise((resolve) => setTimeout(resolve, delay));
    this.assertLive();
    let proc: WorkerProcess;
    try {
      proc = await WorkerProcess.start(this.launch, this.opts);
    } catch (err) {
      this.failures++;
      throw err;
    }
    if (this.state === 'released') {
      await proc.stop();
      this.assertLive();
    }
    this.client = this.connect(proc);
    this.state = 'up';
  }

  private assertLive(): void {
    if (this.state === 'released') throw new UsageError(`model ${this.info.name} has been released`);
  }
}

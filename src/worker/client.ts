/**
 * Requests to one worker process and their answers: each request carries an id, each
 * answer names it; a frame's `token` messages stream to its caller until its `caption`.
 * Every request has a deadline: a worker that misses one is hung — it is killed and every
 * pending request fails with that sentence. Between requests the worker is pinged, so a
 * worker that stopped reading is found even when no stream is captioning.
 */
import { ModelError } from '../errors.js';
import type { WorkerProcess } from './process.js';
import { WORKER_DEFAULTS, type WorkerOptions } from './process.js';
import { WorkerProtocolError, workerError, type WorkerMessage, type WorkerRequest } from './protocol.js';

type Answer<T extends WorkerMessage['t']> = Extract<WorkerMessage, { t: T }>;
export type CaptionAnswer = Answer<'caption'>;

/** The answer each request type expects. */
const ANSWERS = { open: 'opened', frame: 'caption', close: 'closed', stats: 'stats', ping: 'pong' } as const;
type Asked = keyof typeof ANSWERS;
type RequestOf<K extends Asked> = Omit<Extract<WorkerRequest, { t: K }>, 'id'>;

interface Pending {
  expects: WorkerMessage['t'];
  resolve(m: WorkerMessage): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  onToken?: (text: string) => void;
}

export class WorkerClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly pingTimer: NodeJS.Timeout;
  private ended: Error | undefined;

  constructor(
    readonly proc: WorkerProcess,
    private readonly opts: WorkerOptions = {},
  ) {
    proc.onMessage = (m) => this.route(m);
    proc.onExit = (err) => this.endAll(err);
    this.pingTimer = setInterval(() => void this.ping().catch(() => undefined), opts.pingIntervalMs ?? WORKER_DEFAULTS.pingIntervalMs);
    this.pingTimer.unref();
    proc.hold(false);
  }

  request<K extends Exclude<Asked, 'frame'>>(req: RequestOf<K> & { t: K }): Promise<Answer<(typeof ANSWERS)[K]>> {
    return this.ask(req, this.opts.requestTimeoutMs ?? WORKER_DEFAULTS.requestTimeoutMs) as Promise<Answer<(typeof ANSWERS)[K]>>;
  }

  /** Sends a frame; `onToken` gets its text pieces; resolves with its caption. */
  frame(req: RequestOf<'frame'> & { t: 'frame' }, onToken: (text: string) => void): Promise<CaptionAnswer> {
    return this.ask(req, this.opts.frameTimeoutMs ?? WORKER_DEFAULTS.frameTimeoutMs, onToken) as Promise<CaptionAnswer>;
  }

  /** Asks the worker to end the session's current frame at the next token (no answer). */
  cut(session: number): void {
    this.sendQuietly({ t: 'cut', session });
  }

  /** Sends a message that needs no answer (nothing happens when the worker is gone). */
  sendQuietly(req: WorkerRequest): void {
    if (this.ended) return;
    try {
      this.proc.send(req);
    } catch {
      /* the worker is gone; its exit is reported on its own */
    }
  }

  ping(): Promise<unknown> {
    return this.request({ t: 'ping' });
  }

  close(): void {
    clearInterval(this.pingTimer);
  }

  private ask(req: Omit<WorkerRequest, 'id'> & { t: Asked }, timeoutMs: number, onToken?: (text: string) => void): Promise<WorkerMessage> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    return new Promise<WorkerMessage>((resolve, reject) => {
      const timer = setTimeout(() => this.hung(req.t, timeoutMs), timeoutMs);
      this.pending.set(id, { expects: ANSWERS[req.t], resolve, reject, timer, ...(onToken ? { onToken } : {}) });
      if (this.pending.size === 1) this.proc.hold(true);
      try {
        this.proc.send({ ...req, id } as WorkerRequest);
      } catch (err) {
        this.settle(id);
        reject(err as Error);
      }
    });
  }

  private hung(kind: string, ms: number): void {
    const what = kind === 'frame' ? 'caption a frame' : `answer a ${kind} request`;
    this.proc.fail(new ModelError(`The model worker did not ${what} within ${ms / 1000} s (it is hung); it was stopped.`));
  }

  private route(m: WorkerMessage): void {
    if (m.t === 'error' && m.id === undefined) {
      this.proc.fail(workerError(m.code, m.message));
      return;
    }
    if (!('id' in m) || typeof m.id !== 'number' || !this.pending.has(m.id)) {
      this.proc.fail(new WorkerProtocolError(`The model worker sent "${m.t}" for no pending request: not the casa-live worker protocol.`));
      return;
    }
    const p = this.pending.get(m.id) as Pending;
    if (m.t === 'token' && p.expects === 'caption') {
      p.onToken?.(m.text);
      return;
    }
    if (m.t !== 'error' && m.t !== p.expects) {
      this.proc.fail(new WorkerProtocolError(`The model worker answered with "${m.t}" where "${p.expects}" was due: not the casa-live worker protocol.`));
      return;
    }
    this.settle(m.id);
    if (m.t === 'error') p.reject(workerError(m.code, m.message));
    else p.resolve(m);
  }

  private settle(id: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    if (this.pending.size === 0) this.proc.hold(false);
  }

  private endAll(err: Error): void {
    this.ended ??= err;
    this.close();
    for (const [id, p] of [...this.pending]) {
      this.settle(id);
      p.reject(this.ended);
    }
  }
}

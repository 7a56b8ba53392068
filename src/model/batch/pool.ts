/**
 * The main-thread side of the batched engine: a loaded model's inference workers
 * (worker.ts), the streams spread over them, and the channel each stream's backend talks
 * through. Operations made during one turn of the event loop go to a worker as one message
 * (flushed by setImmediate); results come back one message per graph run. A greedy stream's
 * channel takes the worker's chained steps (protocol.ts) for the steps they guessed right.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ModelError, UsageError } from '../../errors.js';
import type { BundleMeta, LoadOptions } from '../bundle.js';
import type { Eviction } from '../kv-cache.js';
import { emptyWorkerStats, type ChainRule, type FromWorker, type StepResult, type ToWorker, type WorkerInit, type WorkerOp, type WorkerStats } from './protocol.js';

export interface ResolvedBatch {
  maxSize: number;
  gatherMs: number;
  frameGatherMs: number;
  workers: number;
}

/** Counters of the batched engine, summed over its workers. */
export interface BatchStats extends WorkerStats {
  workers: number;
}

export interface StepArgs {
  ids: readonly number[];
  position: number;
  evict?: Eviction;
  /** The frame's NCHW pixels when the step starts a frame (the array is handed over). */
  pixels?: Float32Array;
}

interface Pending {
  sid: number;
  resolve: (out: { logits: Float32Array; next?: number[] }) => void;
  reject: (err: Error) => void;
}

/** A chained step's result as it reaches the main thread. */
type ChainedResult = Extract<StepResult, { chained: unknown }>;

/** The worker script: next to this module in the build; from the sources (tests), the build's copy. */
function workerScript(): URL {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return new URL('./worker.js', import.meta.url);
  const built = path.resolve(path.dirname(here), '..', '..', '..', 'dist', 'model', 'batch', 'worker.js');
  if (!existsSync(built)) throw new ModelError(`${built}: the batched engine's worker is not built; run "npm run build"`);
  return pathToFileURL(built);
}

class WorkerHandle {
  readonly pending = new Map<number, Pending>();
  /** The open streams' channels (chained results go to them). */
  readonly channels = new Map<number, StreamChannel>();
  stats: WorkerStats = emptyWorkerStats();
  streams = 0;
  dead: Error | undefined;
  private outbox: WorkerOp[] = [];
  private transfer: ArrayBuffer[] = [];
  private flushing = false;

  constructor(readonly worker: Worker) {
    worker.on('message', (msg: FromWorker) => this.onMessage(msg));
    worker.on('error', (err) => this.die(err.message));
    worker.on('exit', (code) => this.die(`it exited with code ${code}`));
    worker.unref();
  }

  /** Waits for a step: the worker keeps the process alive while a step is outstanding only. */
  expect(req: number, p: Pending): void {
    if (this.pending.size === 0) this.worker.ref();
    this.pending.set(req, p);
  }

  settled(req: number): Pending | undefined {
    const p = this.pending.get(req);
    if (!p) return undefined;
    this.pending.delete(req);
    if (this.pending.size === 0) this.worker.unref();
    return p;
  }

  send(op: WorkerOp, transfer?: ArrayBuffer): void {
    if (this.dead) return;
    this.outbox.push(op);
    if (transfer) this.transfer.push(transfer);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => this.flush());
  }

  /** Rejects the stream's waiting steps (it was closed). */
  drop(sid: number, err: Error): void {
    for (const [req, p] of [...this.pending]) if (p.sid === sid) this.settled(req)?.reject(err);
  }

  private flush(): void {
    this.flushing = false;
    if (this.dead || this.outbox.length === 0) return;
    const msg: ToWorker = { type: 'ops', ops: this.outbox };
    this.worker.postMessage(msg, this.transfer);
    this.outbox = [];
    this.transfer = [];
  }

  private onMessage(msg: FromWorker): void {
    if (msg.type !== 'results') return;
    this.stats = msg.stats;
    for (const r of msg.results) {
      if ('chained' in r) {
        this.channels.get(r.chained.sid)?.chainedResult(r);
        continue;
      }
      const p = this.settled(r.req);
      if (!p) continue; // its stream was closed meanwhile
      if ('error' in r) p.reject(new Error(r.error));
      else p.resolve(r);
    }
  }

  die(why: string): void {
    if (this.dead) return;
    this.dead = new ModelError(`the inference worker stopped (${why}); its streams cannot continue, load the model again`);
    for (const req of [...this.pending.keys()]) this.settled(req)?.reject(this.dead);
  }
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

let nextSid = 1;
let nextReq = 1;

/** One stream's way to its worker. */
export class StreamChannel {
  private closed = false;
  /** The worker's chained step for this stream's next step: the chain's first request, its position and token. */
  private chain: { origin: number; position: number; ids: number[] } | undefined;
  /** Results of the chain's steps that came before the session asked for them, by position. */
  private readonly early = new Map<number, ChainedResult>();
  /** The session's step that a chained step answers, once asked for: its request here. */
  private awaiting: { position: number; req: number } | undefined;

  constructor(
    private readonly handle: WorkerHandle,
    readonly sid: number,
  ) {
    handle.channels.set(sid, this);
  }

  /** Runs one step (batched with other streams'); resolves with its logits [T, V]. */
  step(args: StepArgs): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new UsageError('the session was closed'));
    if (this.handle.dead) return Promise.reject(this.handle.dead);
    const req = nextReq++;
    const { ids, position, evict, pixels } = args;
    const c = this.chain;
    const chained = c !== undefined && !evict && !pixels && position === c.position && sameIds(ids, c.ids);
    return new Promise<Float32Array>((resolve, reject) => {
      if (chained) {
        this.handle.expect(req, { sid: this.sid, resolve: (out) => resolve(out.logits), reject });
        this.takeChained(position, req);
        return;
      }
      this.forgetChain();
      this.handle.expect(req, {
        sid: this.sid,
        resolve: (out) => {
          this.follow(req, position + ids.length, out.next);
          resolve(out.logits);
        },
        reject,
      });
      this.handle.send(
        { op: 'step', sid: this.sid, req, ids: [...ids], position, ...(evict ? { evict } : {}), ...(pixels ? { pixels } : {}) },
        pixels?.buffer as ArrayBuffer | undefined,
      );
    });
  }

  /** A chained step's result from the worker (one of a chain this stream no longer follows is dropped). */
  chainedResult(r: ChainedResult): void {
    if (this.closed || r.req !== this.chain?.origin) return;
    if (this.awaiting?.position === r.chained.position) this.deliver(this.awaiting.req, r);
    else this.early.set(r.chained.position, r);
  }

  /** The session asked for the step the chain guessed: answered now if its result is in, else when it comes. */
  private takeChained(position: number, req: number): void {
    const r = this.early.get(position);
    this.early.delete(position);
    if (r) this.deliver(req, r);
    else this.awaiting = { position, req };
  }

  private deliver(req: number, r: ChainedResult): void {
    this.awaiting = undefined;
    const p = this.handle.settled(req);
    if ('error' in r) {
      this.forgetChain();
      p?.reject(new Error(r.error));
      return;
    }
    this.follow(r.req, r.chained.position + (this.chain?.ids.length ?? 0), r.next);
    p?.resolve(r);
  }

  /** What the worker chained after a step: the next step's guess (none: the chain ends). */
  private follow(origin: number, position: number, next: number[] | undefined): void {
    this.chain = next === undefined ? undefined : { origin, position, ids: next };
  }

  private forgetChain(): void {
    this.chain = undefined;
    this.early.clear();
    this.awaiting = undefined;
  }

  /** The stream's frame ended (the gather rule stops waiting for it). */
  endFrame(): void {
    if (!this.closed) this.handle.send({ op: 'end', sid: this.sid });
  }

  /** Frees the stream's slot; a waiting step is rejected. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.forgetChain();
    this.handle.channels.delete(this.sid);
    this.handle.streams -= 1;
    this.handle.drop(this.sid, new UsageError('the session was closed'));
    this.handle.send({ op: 'close', sid: this.sid });
  }
}

/** The inference workers of one loaded model. */
export class InferencePool {
  private constructor(
    private readonly handles: WorkerHandle[],
    readonly batch: ResolvedBatch,
  ) {}

  /** Starts `batch.workers` workers; each loads and checks the bundle's graphs. */
  static async start(meta: BundleMeta, load: LoadOptions, batch: ResolvedBatch): Promise<InferencePool> {
    const { batch: _omit, ...ort } = load;
    const init: WorkerInit = {
      manifest: meta.manifest,
      files: meta.files,
      load: ort,
      batch,
      poolSegment: 16,
    };
    const script = workerScript();
    const started = await Promise.allSettled(Array.from({ length: batch.workers }, () => startWorker(script, init)));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    if (failed) {
      await Promise.allSettled(ok.map((w) => w.terminate()));
      throw failed.reason;
    }
    return new InferencePool(ok.map((w) => new WorkerHandle(w)), batch);
  }

  /**
   * A new stream on the least loaded worker. `maxTokens`: its cache cap (Infinity: unbounded);
   * `chain`: how the worker chains a greedy stream's steps (none: it does not).
   */
  open(maxTokens: number, windowCapacity: number, chain?: ChainRule): StreamChannel {
    const live = this.handles.filter((h) => !h.dead);
    if (live.length === 0) throw this.handles[0]?.dead ?? new ModelError('the model has no inference worker');
    const handle = live.reduce((a, b) => (b.streams < a.streams ? b : a));
    const sid = nextSid++;
    handle.streams += 1;
    handle.send({ op: 'open', sid, maxTokens: Number.isFinite(maxTokens) ? maxTokens : null, windowCapacity, ...(chain ? { chain } : {}) });
    return new StreamChannel(handle, sid);
  }

  stats(): BatchStats {
    const sum: BatchStats = { ...emptyWorkerStats(), workers: this.handles.length };
    for (const { stats: s } of this.handles) {
      sum.decoderRuns += s.decoderRuns;
      sum.decoderRows += s.decoderRows;
      sum.maxRows = Math.max(sum.maxRows, s.maxRows);
      sum.frameRuns += s.frameRuns;
      sum.frames += s.frames;
      sum.busyMs += s.busyMs;
      sum.decoderMs += s.decoderMs;
      sum.frameMs += s.frameMs;
      sum.streams += s.streams;
      sum.chainedSteps += s.chainedSteps;
      sum.chainedRolledBack += s.chainedRolledBack;
    }
    return sum;
  }

  /** Ends the workers (each releases its onnxruntime sessions first). */
  async release(): Promise<void> {
    await Promise.allSettled(
      this.handles.map(async (h) => {
        h.die('the model was released');
        const exited = new Promise<void>((resolve) => h.worker.once('exit', () => resolve()));
        h.worker.ref(); // until it has exited
        h.worker.postMessage({ type: 'release' } satisfies ToWorker);
        const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5000).unref());
        if ((await Promise.race([exited, timeout])) === 'timeout') await h.worker.terminate();
      }),
    );
  }
}

/**
 * The inference worker's V8 young generation (MB). A worker allocates small short-lived
 * objects between graph runs; with V8's default young generation (grown to tens of MB under
 * that rate) each allocation touches fresh memory and evicts the decoder's inputs and weights
 * from the CPU caches, which made the runs after it slower. A limit of 2 (V8 derives its
 * semi-spaces from it) keeps the nursery small: 8 % more frames per second at 64 sessions,
 * measured (docs/architecture.md §Batching).
 */
const WORKER_YOUNG_GENERATION_MB = 2;

function startWorker(script: URL, init: WorkerInit): Promise<Worker> {
  return new Promise<Worker>((resolve, reject) => {
    const worker = new Worker(script, { workerData: init, resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
    const fail = (err: Error): void => {
      void worker.terminate();
      reject(err);
    };
    const onMessage = (msg: FromWorker): void => {
      if (msg.type === 'ready') {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        resolve(worker);
      } else if (msg.type === 'failed') {
        fail(new ModelError(msg.message));
      }
    };
    const onError = (err: Error): void => fail(new ModelError(`the inference worker failed to start (${err.message})`));
    const onExit = (code: number): void => fail(new ModelError(`the inference worker exited with code ${code} while starting`));
    worker.on('message', onMessage);
    worker.once('error', onError);
    worker.once('exit', onExit);
  });
}

/**
 * The graph runs of one inference worker (docs/architecture.md §Batching): it holds the
 * K/V of its streams and runs a round of steps as few graph runs as it can —
 *   1. evictions the main thread decided;
 *   2. the frames among the steps: one vision run and one casa_kv run for all of them,
 *      then each stream's image K/V swapped in and its window emptied;
 *   3. the decoder: steps with the same number of tokens together, at most `maxSize` rows
 *      per run, each row with its own positions and cache lengths.
 * A failing run fails the steps in it (and their streams), nothing else.
 *
 * Chaining (greedy streams, protocol.ts ChainRule): after a decoder run, each such row's
 * likely next token becomes a step of its own (`takeChained`), run in the next round; a
 * step of the main thread's that comes instead rolls the chained entries back first.
 */
import type { CasaBatchDecoderGraph, CasaGraphs } from '../graphs.js';
import type { Manifest } from '../manifest.js';
import { applyStopBias, argmax } from '../logits.js';
import { inverseFrequencies } from '../rope.js';
import { emptyWorkerStats, type ChainRule, type StepOp, type StepOutcome, type StepResult, type WorkerStats } from './protocol.js';
import { ResidentInput, SlotPool, StridedKv } from './slots.js';

/** Resident decoder inputs for one run's rows: the self-attention cache, image and window K/V. */
interface Lane {
  past: ResidentInput;
  image: ResidentInput;
  window: ResidentInput;
}

interface Stream {
  /** Self-attention cache. */
  slot: StridedKv;
  pooled: boolean;
  /** CASA window text K/V (C layers). */
  window: StridedKv;
  /** The current frame's image K/V (C layers; empty in window 0). */
  image: StridedKv;
  /** Why the stream cannot go on (a failed run left its caches half updated). */
  failed?: string;
  /** The cache cap (null: unbounded): a step that would need an eviction is not chained. */
  maxTokens: number | null;
  chain?: ChainRule;
  /** Single-token steps since the frame's first step (none chained before the first frame). */
  chainUsed: number;
  /** `chainUsed` before each chained step since the main thread's last step, by position (restored by a roll-back). */
  chainUsedAt: Map<number, number>;
}

/** A step's result, in the form its kind is answered with. */
export function stepResult(step: StepOp, outcome: StepOutcome): StepResult {
  return step.chained ? { req: step.req, chained: { sid: step.sid, position: step.position }, ...outcome } : { req: step.req, ...outcome };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class BatchExecutor {
  readonly stats: WorkerStats = emptyWorkerStats();
  private readonly decoderTimer = { ortMs: 0, runs: 0 };
  private readonly frameTimer = { ortMs: 0, runs: 0 };
  private readonly streams = new Map<number, Stream>();
  private readonly pool: SlotPool;
  /** Chained steps made by the last round, for the next. */
  private chained: StepOp[] = [];
  /** A logits row biased for a guess (chainAfter), reused. */
  private readonly guessRow: Float32Array;
  /** The frames of a vision run, one after the other (grown when a run has more). */
  private pixels = new Float32Array(0);
  /**
   * The decoder's cache inputs, kept between runs (ResidentInput): one lane per `maxSize`
   * rows, so that more streams than fit in one run still find their rows in place.
   */
  private readonly lanes: Lane[] = [];
  private readonly decoder: CasaBatchDecoderGraph;
  private readonly invFreq: Float64Array;
  private readonly dims: { L: number; C: number; H: number; Dh: number; N: number; V: number };

  constructor(
    private readonly manifest: Manifest,
    private readonly graphs: CasaGraphs,
    private readonly maxSize: number,
    poolSegment: number,
  ) {
    const d = manifest.decoder;
    this.dims = { L: d.layers, C: d.casaLayers.length, H: d.kvHeads, Dh: d.headDim, N: manifest.image.tokensPerFrame, V: d.vocabSize };
    this.decoder = graphs.decoder as CasaBatchDecoderGraph;
    this.guessRow = new Float32Array(d.vocabSize);
    this.invFreq = inverseFrequencies(d.headDim, d.ropeTheta);
    this.pool = new SlotPool({ layers: d.layers, kvHeads: d.kvHeads, headDim: d.headDim }, manifest.context.maxContextTokens, poolSegment);
  }

  /** A new stream: a pool slot when its cap fits the pool's, else storage of its own (growing when unbounded). */
  open(sid: number, maxTokens: number | null, windowCapacity: number, chain?: ChainRule): void {
    const { L, C, H, Dh, N } = this.dims;
    const pooled = maxTokens !== null && maxTokens <= this.pool.slotCapacity;
    const slot = pooled
      ? this.pool.acquire()
      : new StridedKv({ layers: L, kvHeads: H, headDim: Dh }, maxTokens ?? this.pool.slotCapacity, maxTokens === null);
    const casa = { layers: C, kvHeads: H, headDim: Dh };
    const window = new StridedKv(casa, windowCapacity, true);
    this.streams.set(sid, { slot, pooled, window, image: new StridedKv(casa, N, false), maxTokens, ...(chain ? { chain } : {}), chainUsed: Infinity, chainUsedAt: new Map() });
    this.stats.streams = this.streams.size;
  }

  close(sid: number): void {
    const s = this.streams.get(sid);
    if (!s) return;
    if (s.pooled) this.pool.release(s.slot);
    this.streams.delete(sid);
    this.stats.streams = this.streams.size;
  }

  /** The chained steps the last round made (to be submitted like the main thread's). */
  takeChained(): StepOp[] {
    const out = this.chained;
    this.chained = [];
    return out;
  }

  /** Runs one round of steps; `emit` receives each graph run's results as soon as they are known. */
  async round(steps: readonly StepOp[], emit: (results: StepResult[]) => void): Promise<void> {
    const t0 = performance.now();
    const live = this.refuseUnrunnable(steps, emit);
    const framed = live.filter((s) => s.pixels);
    for (let i = 0; i < framed.length; i += this.maxSize) await this.startFrames(framed.slice(i, i + this.maxSize), emit);
    const byTokens = new Map<number, StepOp[]>();
    for (const step of live) {
      if (this.streams.get(step.sid)?.failed !== undefined) continue; // its frame failed just now
      const group = byTokens.get(step.ids.length) ?? [];
      group.push(step);
      byTokens.set(step.ids.length, group);
    }
    for (const group of byTokens.values()) {
      for (const [lane, steps] of this.chunks(group)) emit(await this.decode(steps, lane));
    }
    this.stats.busyMs += performance.now() - t0;
    this.stats.decoderMs = this.decoderTimer.ortMs;
    this.stats.frameMs = this.frameTimer.ortMs;
  }

  /** Applies each step's eviction; the steps that cannot run get their error at once. */
  private refuseUnrunnable(steps: readonly StepOp[], emit: (results: StepResult[]) => void): StepOp[] {
    const refused: StepResult[] = [];
    const live: StepOp[] = [];
    for (const step of steps) {
      const s = this.streams.get(step.sid);
      let error = s ? s.failed : 'the stream is not open in this worker';
      if (s && error === undefined) {
        if (!step.chained) this.rollBack(s, step);
        if (step.evict) s.slot.evict(step.evict.start, step.evict.count, this.invFreq);
        if (s.slot.length !== step.position) {
          error = `internal: the stream's cache holds ${s.slot.length} entries, the step expects ${step.position}`;
          s.failed = error;
        }
      }
      if (error === undefined) live.push(step);
      else refused.push(stepResult(step, { error }));
    }
    if (refused.length) emit(refused);
    return live;
  }

  /**
   * A step of the main thread's: the entries of chained steps it did not take (at and after
   * the position it feeds, before its eviction) are dropped from the caches.
   */
  private rollBack(s: Stream, step: StepOp): void {
    const keep = step.position + (step.evict?.count ?? 0);
    const used = s.chainUsedAt.get(keep); // the chained step this one replaces, if any
    s.chainUsedAt.clear();
    const extra = s.slot.length - keep;
    if (used === undefined || extra <= 0) return;
    s.slot.truncate(keep);
    s.window.truncate(s.window.length - extra);
    s.chainUsed = used;
    this.stats.chainedRolledBack += extra;
  }

  /**
   * After a row's run: its likely next step (ChainRule) as a chained step, unless the rule,
   * the cache cap or a closed frame says no; returns the step's ids.
   */
  private chainAfter(st: Stream, step: StepOp, logits: Float32Array, t: number): number[] | undefined {
    const rule = st.chain;
    // Not inside a frame (the prompt, chainUsed = Infinity), or its text is closed: nothing to chain.
    if (!rule || st.failed !== undefined || st.chainUsed > rule.tokens || rule.stopIds.includes(step.ids[t - 1] as number)) return undefined;
    const { V } = this.dims;
    const row = this.guessRow;
    row.set(logits.subarray((t - 1) * V, t * V));
    applyStopBias(row, rule.stopIds, rule.eosBias, rule.stopBias);
    const next = argmax(row);
    const stop = rule.stopIds.includes(next);
    let ids: number[];
    if (stop || st.chainUsed < rule.tokens) ids = [next];
    else if (rule.stopIds.length === 1) ids = [next, rule.stopIds[0] as number];
    else return undefined;
    if (st.maxTokens !== null && st.slot.length + ids.length > st.maxTokens) return undefined;
    st.chainUsedAt.set(st.slot.length, st.chainUsed);
    const closes = ids.length > 1 || stop;
    this.chained.push({ op: 'step', sid: step.sid, req: step.req, chained: true, ...(closes ? { closes: true } : {}), ids, position: st.slot.length });
    return ids;
  }

  /** vision + casa_kv for the steps' frames in one run each; the window swap. */
  private async startFrames(steps: StepOp[], emit: (results: StepResult[]) => void): Promise<void> {
    const { N } = this.dims;
    const { width, height } = this.manifest.image;
    const frame = 3 * width * height;
    if (this.pixels.length < steps.length * frame) this.pixels = new Float32Array(steps.length * frame);
    const pixels = this.pixels.subarray(0, steps.length * frame);
    steps.forEach((s, f) => pixels.set(s.pixels as Float32Array, f * frame));
    try {
      const embeds = await this.graphs.vision.run(pixels, this.frameTimer, steps.length);
      const { keys, values } = await this.graphs.casaKv.run(embeds, this.frameTimer);
      const k = keys.data as Float32Array;
      const v = values.data as Float32Array;
      steps.forEach((s, f) => {
        const st = this.streams.get(s.sid) as Stream;
        st.chainUsed = 0;
        st.image.clear();
        st.image.appendRow(k, v, steps.length, f, N);
        st.window.clear();
      });
    } catch (err) {
      emit(this.fail(steps, `onnxruntime failed on a batch of ${steps.length} frames: ${message(err)}`));
    }
    this.stats.frameRuns += 1;
    this.stats.frames += steps.length;
  }

  private fail(steps: readonly StepOp[], error: string): StepResult[] {
    for (const s of steps) {
      const st = this.streams.get(s.sid);
      if (st) st.failed = error;
    }
    return steps.map((s) => stepResult(s, { error }));
  }

  /**
   * Splits steps of one token count into runs of at most `maxSize`, each with the lane
   * where most of its rows already are; within a run, the rows in place come first.
   */
  private chunks(group: readonly StepOp[]): [Lane, StepOp[]][] {
    const { H, Dh, L, C } = this.dims;
    const runs = Math.ceil(group.length / this.maxSize);
    while (this.lanes.length < runs) {
      this.lanes.push({ past: new ResidentInput(L, H, Dh, 16), image: new ResidentInput(C, H, Dh, 0), window: new ResidentInput(C, H, Dh, 8) });
    }
    const slot = (s: StepOp): StridedKv => (this.streams.get(s.sid) as Stream).slot;
    const home = new Map<Lane, StepOp[]>(this.lanes.map((l) => [l, []]));
    const unplaced: StepOp[] = [];
    for (const step of group) {
      const lane = this.lanes.find((l) => l.past.rank(slot(step)) < Infinity);
      (lane ? (home.get(lane) as StepOp[]) : unplaced).push(step);
    }
    // The lanes holding most of the rows run them; the other rows fill up the runs.
    const chosen = [...home.entries()].sort((a, b) => b[1].length - a[1].length).slice(0, runs);
    for (const [lane, steps] of home) if (!chosen.some(([l]) => l === lane)) unplaced.push(...steps);
    for (const [lane, steps] of chosen) {
      steps.sort((a, b) => lane.past.rank(slot(a)) - lane.past.rank(slot(b)));
      unplaced.push(...steps.splice(this.maxSize));
    }
    for (const [, steps] of chosen) steps.push(...unplaced.splice(0, this.maxSize - steps.length));
    return chosen.filter(([, steps]) => steps.length > 0);
  }

  /** One decoder run over steps of the same token count (rows in place first); each row's new K/V appended. */
  private async decode(steps: StepOp[], lane: Lane): Promise<StepResult[]> {
    const { V } = this.dims;
    const t = (steps[0] as StepOp).ids.length;
    const stream = (s: StepOp): Stream => this.streams.get(s.sid) as Stream;
    const rows = steps.map(stream);
    const b = rows.length;
    const lengths = (kvs: StridedKv[]): BigInt64Array => BigInt64Array.from(kvs, (kv) => BigInt(kv.length));
    const cache = (input: ResidentInput, kvs: StridedKv[]) => ({ ...input.prepare(kvs), lengths: lengths(kvs) });
    const slots = rows.map((r) => r.slot);
    const windows = rows.map((r) => r.window);
    const [past, image, window] = [cache(lane.past, slots), cache(lane.image, rows.map((r) => r.image)), cache(lane.window, windows)];
    const ids = new BigInt64Array(b * t);
    const positions = new BigInt64Array(b * t);
    const windowPositions = new BigInt64Array(b * t);
    rows.forEach((r, i) => {
      const step = steps[i] as StepOp;
      for (let j = 0; j < t; j++) {
        ids[i * t + j] = BigInt(step.ids[j] as number);
        positions[i * t + j] = BigInt(r.slot.length + j);
        windowPositions[i * t + j] = BigInt(r.window.length + 1 + j);
      }
    });
    this.stats.decoderRuns += 1;
    this.stats.decoderRows += b;
    for (const s of steps) if (s.chained) this.stats.chainedSteps += 1;
    this.stats.maxRows = Math.max(this.stats.maxRows, b);
    let out;
    try {
      out = await this.decoder.run({ rows: b, tokens: t, ids, positions, windowPositions, past, image, window }, this.decoderTimer);
    } catch (err) {
      return this.fail(steps, `onnxruntime failed on a batch of ${b} streams: ${message(err)}`);
    }
    rows.forEach((r, i) => {
      r.slot.appendRow(out.newKeys, out.newValues, b, i, t);
      r.window.appendRow(out.newWindowKeys, out.newWindowValues, b, i, t);
    });
    lane.past.appendRows(out.newKeys, out.newValues, t);
    lane.window.appendRows(out.newWindowKeys, out.newWindowValues, t);
    return steps.map((s, i) => {
      const logits = out.logits.subarray(i * t * V, (i + 1) * t * V);
      const st = rows[i] as Stream;
      if (t === 1 && !st.chain?.stopIds.includes(s.ids[0] as number)) st.chainUsed += 1;
      const next = this.chainAfter(st, s, logits, t);
      return stepResult(s, next === undefined ? { logits } : { logits, next });
    });
  }
}

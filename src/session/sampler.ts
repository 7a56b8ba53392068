/**
 * Token sampler (DESIGN §3.3): EMA repetition penalty, stop-token biases, windowed no-repeat
 * n-gram, temperature, top-k, seeded random draw; greedy (argmax) at temperature 0. The
 * worker engine's sampler (tools/casa_worker/sampler.py) implements the same steps.
 *
 * Exact formulas, in the order they are applied to the logits ℓ of one step:
 *
 * 1. EMA repetition penalty. Per token a count cᵢ ≥ 0, kept over the whole stream. After
 *    every sampled token s: cᵢ ← cᵢ·decay for every i, then, unless s is in
 *    `penaltyIgnore`, c_s ← min(c_s + 1, countClamp). Before sampling, every token with
 *    cᵢ > 0 gets ℓᵢ ← ℓᵢ / penalty^cᵢ if ℓᵢ > 0, else ℓᵢ ← ℓᵢ · penalty^cᵢ. Ignored ids (the
 *    space and EOS by default) are thus never counted nor penalised. Counts that decay
 *    below 1e-6 are dropped (their factor differs from 1 by < 2e-7).
 * 2. Stop bias, on every stop id (`stopIds`, default [eosId]): first the additive
 *    ℓ ← ℓ + eosBias (the bundles' setting), then the multiplicative bias of Kyutai's live
 *    captioner, ℓ ← ℓ·stopBias if ℓ ≥ 0, else ℓ/stopBias (stopBias < 1 makes stopping less
 *    likely on either side of 0; 1 = none). Both are kept: the additive one is what the
 *    bundles were tuned with, the multiplicative one what the released models were.
 * 2b. Windowed no-repeat n-gram (Kyutai's, across frames): the last `noRepeatNgramWindow`
 *    tokens fed to the model (prompt, markers, sampled and stop tokens: `observe` and `fed`)
 *    are scanned; every token that would complete an n-gram (n = noRepeatNgramSize, 0 = off)
 *    already in the window gets ℓ = −∞. Stop ids are exempt: silent frames legitimately
 *    repeat them.
 * 3. Top-k: tokens whose logit is below the k-th largest are removed (ties with the k-th
 *    are kept); k = 0 or k ≥ V keeps all. (Top-k before or after the temperature division
 *    keeps the same set, T > 0.)
 * 4. Temperature and softmax over the kept tokens: pᵢ = exp((ℓᵢ − max)/T) / Σ.
 * 5. One draw with the seeded PRNG (mulberry32): the first kept token, in id order, whose
 *    cumulative probability exceeds u ∈ [0, 1).
 *
 * Temperature 0 is greedy: the argmax (first index on ties) of the raw logits. Steps 1–2b
 * are not applied then unless `greedyProcessors` is set: the bundles' evaluation figures
 * (eval.json) are measured with plain argmax decoding, and with penalty 1.15 and count
 * clamp 5 a recurring word (" it", " moves") would be pushed down by up to 2× in logit
 * scale, changing greedy captions of the small model. The penalty and bias are sampling
 * settings of the reference script (temperature 0.4). The counts are still updated in
 * greedy mode, so switching settings mid-stream is consistent.
 */

import { applyStopBias, argmax } from '../model/logits.js';

export interface SamplerSettings {
  /** 0 = greedy. */
  temperature: number;
  /** 0 or ≥ vocabulary size: no top-k filtering. */
  topK: number;
  repetitionPenalty: number;
  repetitionPenaltyDecay: number;
  repetitionCountClamp: number;
  /** Ids never counted nor penalised. */
  penaltyIgnore: readonly number[];
  eosBias: number;
  eosId: number;
  /** Every id that ends a frame's text (default [eosId]). */
  stopIds?: readonly number[];
  /** Multiplicative stop-token bias (default 1: none). */
  stopBias?: number;
  /** Windowed no-repeat n-gram: n (default 0: off) and the window scanned (default 60). */
  noRepeatNgramSize?: number;
  noRepeatNgramWindow?: number;
  /** PRNG seed (uint32). */
  seed: number;
  /** Apply the repetition penalty, stop bias and n-gram ban in greedy mode too (default false). */
  greedyProcessors?: boolean;
}

/**
 * The sampler's numeric settings that a session option, a config `generation` field and a
 * worker's announced default carry under the same name (the one list of those names).
 */
export const SAMPLING_FIELDS = [
  'temperature',
  'topK',
  'repetitionPenalty',
  'repetitionPenaltyDecay',
  'repetitionCountClamp',
  'eosBias',
  'stopBias',
  'noRepeatNgramSize',
  'noRepeatNgramWindow',
] as const satisfies ReadonlyArray<keyof SamplerSettings>;

/** mulberry32: a small, fast, seedable 32-bit PRNG. next() ∈ [0, 1). */
export class Mulberry32 {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/**
 * EMA counts with O(1) updates: the true count is `scaled[i] · g`, where g = decay^steps is
 * one shared factor, so decaying every count is one multiplication. Tokens with a count are
 * listed in `ids` (ascending insertion order); counts under FLOOR are dropped lazily.
 */
export class EmaCounts {
  static readonly FLOOR = 1e-6;
  private readonly scaled: Float64Array;
  private readonly listed: Uint8Array;
  private readonly ids: Int32Array;
  private n = 0;
  private g = 1;

  constructor(vocabSize: number) {
    this.scaled = new Float64Array(vocabSize);
    this.listed = new Uint8Array(vocabSize);
    this.ids = new Int32Array(vocabSize);
  }

  /** c ← c·decay for all; then (token not null) c[token] ← min(c[token] + 1, clamp). */
  update(token: number | null, decay: number, clamp: number): void {
    if (decay === 0) this.clear();
    else {
      this.g *= decay;
      if (this.g < 1e-200) this.renormalise();
    }
    if (token === null) return;
    const c = Math.min(this.get(token) + 1, clamp);
    this.set(token, c);
  }

  /** The count of `token` (0 when it has none or it decayed under FLOOR). */
  get(token: number): number {
    if (!this.listed[token]) return 0;
    const c = (this.scaled[token] as number) * this.g;
    return c < EmaCounts.FLOOR ? 0 : c;
  }

  /** Sets a count directly (tests, restoring state). */
  set(token: number, count: number): void {
    this.scaled[token] = count / this.g;
    if (!this.listed[token]) {
      this.listed[token] = 1;
      this.ids[this.n++] = token;
    }
  }

  /** Calls fn(id, count) for every token with a count ≥ FLOOR; drops the others. */
  forEach(fn: (id: number, count: number) => void): void {
    let w = 0;
    for (let r = 0; r < this.n; r++) {
      const id = this.ids[r] as number;
      const c = (this.scaled[id] as number) * this.g;
      if (c < EmaCounts.FLOOR) {
        this.listed[id] = 0;
        this.scaled[id] = 0;
        continue;
      }
      this.ids[w++] = id;
      fn(id, c);
    }
    this.n = w;
  }

  /** Tokens listed (some may be under FLOOR until the next forEach). */
  get size(): number {
    return this.n;
  }

  private renormalise(): void {
    for (let r = 0; r < this.n; r++) {
      const id = this.ids[r] as number;
      this.scaled[id] = (this.scaled[id] as number) * this.g;
    }
    this.g = 1;
  }

  private clear(): void {
    for (let r = 0; r < this.n; r++) {
      const id = this.ids[r] as number;
      this.listed[id] = 0;
      this.scaled[id] = 0;
    }
    this.n = 0;
    this.g = 1;
  }
}

/** ℓᵢ ← ℓᵢ / penalty^cᵢ (ℓᵢ > 0) or ℓᵢ · penalty^cᵢ (ℓᵢ ≤ 0) for every counted token. In place. */
export function applyRepetitionPenalty(
  logits: Float32Array,
  counts: EmaCounts,
  penalty: number,
  ignore: ReadonlySet<number>,
): void {
  if (penalty === 1) return;
  const logPenalty = Math.log(penalty);
  counts.forEach((id, c) => {
    if (ignore.has(id) || id >= logits.length) return;
    const factor = Math.exp(c * logPenalty);
    const l = logits[id] as number;
    logits[id] = l > 0 ? l / factor : l * factor;
  });
}

/**
 * The recent tokens fed to the model (a ring of `window` ids), for the windowed no-repeat
 * n-gram ban (step 2b): across frames, since the window outlives a frame.
 */
export class NgramWindow {
  private readonly ring: Int32Array;
  private start = 0;
  private n = 0;

  constructor(readonly window: number) {
    this.ring = new Int32Array(Math.max(1, window));
  }

  push(id: number): void {
    const cap = this.ring.length;
    if (this.n < cap) this.ring[(this.start + this.n++) % cap] = id;
    else {
      this.ring[this.start] = id;
      this.start = (this.start + 1) % cap;
    }
  }

  /** The id at position i of the window (0 = oldest). */
  at(i: number): number {
    return this.ring[(this.start + i) % this.ring.length] as number;
  }

  get length(): number {
    return this.n;
  }

  /** Ids that would complete an n-gram already in the window, stop ids excluded. */
  banned(size: number, exempt: ReadonlySet<number>): Set<number> {
    const out = new Set<number>();
    const len = this.n;
    if (size < 1 || len < size - 1) return out;
    const p = len - (size - 1); // the prefix: the last size − 1 ids
    for (let i = 0; i + size <= len; i++) {
      let same = true;
      for (let j = 0; j < size - 1 && same; j++) same = this.at(i + j) === this.at(p + j);
      const next = this.at(i + size - 1);
      if (same && !exempt.has(next)) out.add(next);
    }
    return out;
  }
}

/**
 * The k-th largest value of `values` (1-based k), using `scratch` (same length) as work
 * space. Quickselect, O(V) on average.
 */
export function kthLargest(values: Float32Array, k: number, scratch: Float32Array): number {
  const n = values.length;
  scratch.set(values);
  let lo = 0;
  let hi = n - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = scratch[(lo + hi) >> 1] as number;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while ((scratch[i] as number) > pivot) i++;
      while ((scratch[j] as number) < pivot) j--;
      if (i <= j) {
        const t = scratch[i] as number;
        scratch[i] = scratch[j] as number;
        scratch[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return scratch[target] as number;
}

// Steps 3–5 one at a time: Sampler.sample fuses them (over the kept tokens only), so the
// four functions below are a plain reference of the formulas, exported for
// test/engine/sampler.test.ts, which checks the fused path against them. Not used at runtime.

/** Test-only reference of step 4's division: ℓᵢ ← ℓᵢ / T, in place. */
export function applyTemperature(logits: Float32Array, temperature: number): void {
  if (temperature === 1) return;
  const inv = 1 / temperature;
  for (let i = 0; i < logits.length; i++) logits[i] = (logits[i] as number) * inv;
}

/** Test-only reference of step 3: every logit below the k-th largest → −Infinity (ties with the k-th are kept). */
export function applyTopK(logits: Float32Array, k: number, scratch: Float32Array): void {
  if (k <= 0 || k >= logits.length) return;
  const threshold = kthLargest(logits, k, scratch);
  for (let i = 0; i < logits.length; i++) if ((logits[i] as number) < threshold) logits[i] = -Infinity;
}

/** Test-only reference of step 4: softmax of `logits` into `probs` (−Infinity → 0). */
export function softmax(logits: Float32Array, probs: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if ((logits[i] as number) > max) max = logits[i] as number;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp((logits[i] as number) - max);
    probs[i] = e;
    sum += e;
  }
  for (let i = 0; i < logits.length; i++) probs[i] = (probs[i] as number) / sum;
}

/** Test-only reference of step 5: the first index whose cumulative probability exceeds u (the last non-zero one if rounding leaves u above the total). */
export function drawFromProbs(probs: Float64Array, u: number): number {
  let acc = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i] as number;
    if (p <= 0) continue;
    acc += p;
    last = i;
    if (u < acc) return i;
  }
  return last;
}

export class Sampler {
  readonly settings: SamplerSettings;
  readonly counts: EmaCounts;
  private readonly ignore: Set<number>;
  private readonly rng: Mulberry32;
  private readonly work: Float32Array;
  private readonly scratch: Float32Array;
  private readonly keptIds: Int32Array;
  private readonly keptWeights: Float64Array;
  private readonly stopIds: readonly number[];
  private readonly stops: ReadonlySet<number>;
  private readonly recent: NgramWindow;

  constructor(vocabSize: number, settings: SamplerSettings) {
    if (!(settings.temperature >= 0)) throw new RangeError(`temperature must be ≥ 0, got ${settings.temperature}`);
    if (!(settings.repetitionPenalty > 0)) throw new RangeError(`repetitionPenalty must be > 0, got ${settings.repetitionPenalty}`);
    this.settings = { ...settings };
    this.stopIds = settings.stopIds ?? [settings.eosId];
    this.stops = new Set(this.stopIds);
    this.recent = new NgramWindow(settings.noRepeatNgramWindow ?? 60);
    this.ignore = new Set(settings.penaltyIgnore);
    this.counts = new EmaCounts(vocabSize);
    this.rng = new Mulberry32(settings.seed);
    this.work = new Float32Array(vocabSize);
    this.scratch = new Float32Array(vocabSize);
    this.keptIds = new Int32Array(vocabSize);
    this.keptWeights = new Float64Array(vocabSize);
  }

  /** Picks the next token from one row of logits (not modified). Call `observe` with the token fed next. */
  sample(logits: Float32Array): number {
    const s = this.settings;
    const greedy = s.temperature === 0;
    if (greedy && !s.greedyProcessors) return argmax(logits);
    const work = this.work;
    work.set(logits);
    applyRepetitionPenalty(work, this.counts, s.repetitionPenalty, this.ignore);
    applyStopBias(work, this.stopIds, s.eosBias, s.stopBias ?? 1);
    for (const id of this.recent.banned(s.noRepeatNgramSize ?? 0, this.stops)) if (id < work.length) work[id] = -Infinity;
    if (greedy) return argmax(work);
    // Top-k, temperature and softmax over the kept tokens only: softmax(ℓ/T) restricted to
    // the kept set equals exp((ℓ − max)/T) / Σ, so the other entries are never touched.
    const V = work.length;
    const threshold = s.topK > 0 && s.topK < V ? kthLargest(work, s.topK, this.scratch) : -Infinity;
    const ids = this.keptIds;
    const weights = this.keptWeights;
    let n = 0;
    let max = -Infinity;
    for (let i = 0; i < V; i++) {
      const l = work[i] as number;
      if (l >= threshold) {
        ids[n] = i;
        weights[n] = l;
        n++;
        if (l > max) max = l;
      }
    }
    if (n === 0 || max === -Infinity) return argmax(work);
    const invT = 1 / s.temperature;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const w = Math.exp(((weights[j] as number) - max) * invT);
      weights[j] = w;
      sum += w;
    }
    // The first kept token whose cumulative weight exceeds u·Σ.
    const target = this.rng.next() * sum;
    let acc = 0;
    let last = ids[0] as number;
    for (let j = 0; j < n; j++) {
      const w = weights[j] as number;
      if (w <= 0) continue;
      acc += w;
      last = ids[j] as number;
      if (target < acc) return last;
    }
    return last;
  }

  /** Updates the repetition counts (and the n-gram window) with a sampled token. */
  observe(token: number): void {
    const counted = this.ignore.has(token) ? null : token;
    this.counts.update(counted, this.settings.repetitionPenaltyDecay, this.settings.repetitionCountClamp);
    this.recent.push(token);
  }

  /** Tokens fed to the model that were not sampled (prompt, markers, a forced stop): the n-gram window only. */
  fed(ids: readonly number[]): void {
    for (const id of ids) this.recent.push(id);
  }
}

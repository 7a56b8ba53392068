import { describe, expect, it } from 'vitest';
import { applyEosBias, argmax } from '../../src/model/logits.js';
import {
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  drawFromProbs,
  EmaCounts,
  kthLargest,
  Mulberry32,
  Sampler,
  softmax,
  type SamplerSettings,
} from '../../src/session/sampler.js';

const f32 = (xs: number[]) => Float32Array.from(xs);

const base: SamplerSettings = {
  temperature: 1,
  topK: 0,
  repetitionPenalty: 1,
  repetitionPenaltyDecay: 1,
  repetitionCountClamp: 5,
  penaltyIgnore: [],
  eosBias: 0,
  eosId: 2,
  seed: 7,
};

describe('Mulberry32', () => {
  it('is deterministic per seed and uniform-ish in [0, 1)', () => {
    const a = new Mulberry32(42);
    const b = new Mulberry32(42);
    const c = new Mulberry32(43);
    const xs = Array.from({ length: 10_000 }, () => a.next());
    const ys = Array.from({ length: 10_000 }, () => b.next());
    expect(xs).toEqual(ys);
    expect(xs.slice(0, 5)).not.toEqual(Array.from({ length: 5 }, () => c.next()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
  });
});

describe('EMA repetition counts', () => {
  it('decays every count, then adds one to the sampled token', () => {
    const c = new EmaCounts(16);
    c.update(7, 0.5, 10);
    expect(c.get(7)).toBe(1);
    c.update(7, 0.5, 10); // 1·0.5 + 1
    expect(c.get(7)).toBe(1.5);
    c.update(7, 0.5, 10); // 1.5·0.5 + 1
    expect(c.get(7)).toBe(1.75);
    c.update(3, 0.5, 10);
    expect(c.get(7)).toBe(0.875);
    expect(c.get(3)).toBe(1);
    c.update(null, 0.5, 10); // an ignored token: decay only
    expect(c.get(7)).toBe(0.4375);
    expect(c.get(3)).toBe(0.5);
  });

  it('stays exact over long streams (shared decay factor renormalised)', () => {
    const c = new EmaCounts(4);
    for (let i = 0; i < 5000; i++) c.update(1, 0.5, 10); // fixpoint c = 0.5·c + 1 = 2
    expect(c.get(1)).toBeCloseTo(2, 12);
    c.update(2, 0.5, 10);
    expect(c.get(1)).toBeCloseTo(1, 12);
    expect(c.get(2)).toBe(1);
    c.update(3, 0, 10); // decay 0 forgets everything
    expect(c.get(1)).toBe(0);
    expect(c.get(3)).toBe(1);
  });

  it('clamps the count of the sampled token', () => {
    const c = new EmaCounts(16);
    for (let i = 0; i < 4; i++) c.update(1, 1, 2);
    expect(c.get(1)).toBe(2);
  });

  it('drops counts that decayed below 1e-6', () => {
    const c = new EmaCounts(16);
    c.update(1, 0.01, 5);
    c.update(2, 0.01, 5); // 1 → 0.01
    c.update(2, 0.01, 5); // → 1e-4
    c.update(2, 0.01, 5); // → 1e-6 (kept: not below)
    c.update(2, 0.01, 5); // → 1e-8: dropped
    expect(c.get(1)).toBe(0);
    const seen: number[] = [];
    c.forEach((id) => seen.push(id));
    expect(seen).toEqual([2]);
    expect(c.size).toBe(1);
    expect(c.get(1)).toBe(0);
  });
});

describe('logit processors', () => {
  it('repetition penalty divides positive and multiplies negative logits by penalty^count', () => {
    const logits = f32([2, -2, 1, 0.5]);
    const c = new EmaCounts(16);
    c.set(0, 1);
    c.set(1, 2);
    c.set(3, 0.5);
    applyRepetitionPenalty(logits, c, 2, new Set([3]));
    expect(Array.from(logits)).toEqual([1, -8, 1, 0.5]);
    const frac = f32([3]);
    const c2 = new EmaCounts(16);
    c2.set(0, 0.5);
    applyRepetitionPenalty(frac, c2, 4, new Set());
    expect(frac[0]).toBeCloseTo(1.5, 6); // 3 / 4^0.5
  });

  it('EOS bias adds to the EOS logit only', () => {
    const logits = f32([0, 0, 0]);
    applyEosBias(logits, 1, 1.5);
    expect(Array.from(logits)).toEqual([0, 1.5, 0]);
  });

  it('temperature divides', () => {
    const logits = f32([1, 2, -3]);
    applyTemperature(logits, 0.5);
    expect(Array.from(logits)).toEqual([2, 4, -6]);
  });

  it('top-k keeps the k largest, and ties with the k-th', () => {
    const scratch = new Float32Array(5);
    const a = f32([1, 5, 3, 5, 2]);
    applyTopK(a, 2, scratch);
    expect(Array.from(a)).toEqual([-Infinity, 5, -Infinity, 5, -Infinity]);
    const b = f32([1, 5, 3, 5, 2]);
    applyTopK(b, 3, scratch);
    expect(Array.from(b)).toEqual([-Infinity, 5, 3, 5, -Infinity]);
    const c = f32([4, 4, 4, 1, 0]);
    applyTopK(c, 1, scratch);
    expect(Array.from(c)).toEqual([4, 4, 4, -Infinity, -Infinity]);
    const d = f32([1, 2, 3, 4, 5]);
    applyTopK(d, 0, scratch);
    expect(Array.from(d)).toEqual([1, 2, 3, 4, 5]);
    applyTopK(d, 5, scratch);
    expect(Array.from(d)).toEqual([1, 2, 3, 4, 5]);
  });

  it('kthLargest agrees with sorting on random arrays', () => {
    const rng = new Mulberry32(1);
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(rng.next() * 60);
      const xs = Float32Array.from({ length: n }, () => Math.round(rng.next() * 20) / 4); // many ties
      const sorted = Array.from(xs).sort((p, q) => q - p);
      const k = 1 + Math.floor(rng.next() * n);
      expect(kthLargest(xs, k, new Float32Array(n))).toBe(sorted[k - 1]);
    }
  });

  it('softmax and the draw', () => {
    const probs = new Float64Array(2);
    softmax(f32([0, Math.log(3)]), probs);
    expect(probs[0]).toBeCloseTo(0.25, 6);
    expect(probs[1]).toBeCloseTo(0.75, 6);
    const masked = new Float64Array(3);
    softmax(f32([-Infinity, 0, 0]), masked);
    expect(Array.from(masked)).toEqual([0, 0.5, 0.5]);
    expect(drawFromProbs(Float64Array.from([0.25, 0.75]), 0.2)).toBe(0);
    expect(drawFromProbs(Float64Array.from([0.25, 0.75]), 0.25)).toBe(1);
    expect(drawFromProbs(Float64Array.from([0.25, 0.75]), 0.999)).toBe(1);
    expect(drawFromProbs(Float64Array.from([0, 0.5, 0, 0.5]), 0.6)).toBe(3);
    expect(drawFromProbs(Float64Array.from([0, 0.5, 0, 0.5]), 0)).toBe(1);
  });

  it('argmax returns the first maximum', () => {
    expect(argmax(f32([1, 3, 3, 2]))).toBe(1);
    expect(argmax(f32([-5, -1, -3]))).toBe(1);
  });
});

describe('Sampler', () => {
  it('greedy is the argmax of the raw logits: no penalty, no EOS bias', () => {
    const s = new Sampler(3, { ...base, temperature: 0, repetitionPenalty: 10, eosBias: 100, eosId: 2 });
    const logits = f32([1, 3, 2]);
    for (let i = 0; i < 5; i++) {
      const t = s.sample(logits);
      expect(t).toBe(1);
      s.observe(t);
    }
    expect(s.counts.get(1)).toBeGreaterThan(1); // counts still kept
    expect(Array.from(logits)).toEqual([1, 3, 2]); // input untouched
  });

  it('greedyProcessors applies penalty and EOS bias before the argmax', () => {
    const s = new Sampler(3, { ...base, temperature: 0, repetitionPenalty: 4, greedyProcessors: true, eosBias: 0 });
    const logits = f32([2, 3, 0]);
    expect(s.sample(logits)).toBe(1);
    s.observe(1); // 3 / 4 = 0.75 < 2
    expect(s.sample(logits)).toBe(0);
    const b = new Sampler(3, { ...base, temperature: 0, greedyProcessors: true, eosBias: 1.5, eosId: 2 });
    expect(b.sample(f32([1, 1.2, 0]))).toBe(2); // 0 + 1.5
  });

  it('applies penalty, then EOS bias, then top-k (hand-computed)', () => {
    // logits [1, 2, 0.5]; token 1 seen once, penalty 4 → 0.5; EOS (2) bias 1 → 1.5; top-1 → EOS
    const s = new Sampler(3, { ...base, repetitionPenalty: 4, eosBias: 1, eosId: 2, topK: 1 });
    s.observe(1);
    expect(s.sample(f32([1, 2, 0.5]))).toBe(2);
    // no bias: [1, 0.5, 0.5] → top-1 → token 0
    const t = new Sampler(3, { ...base, repetitionPenalty: 4, eosBias: 0, topK: 1 });
    t.observe(1);
    expect(t.sample(f32([1, 2, 0.5]))).toBe(0);
    // ignored ids are never penalised
    const u = new Sampler(3, { ...base, repetitionPenalty: 4, penaltyIgnore: [1], topK: 1 });
    u.observe(1);
    expect(u.sample(f32([1, 2, 0.5]))).toBe(1);
  });

  it('draws with the softmax probabilities at the temperature, reproducibly per seed', () => {
    const logits = f32([0, Math.log(3)]);
    const a = new Sampler(2, { ...base, seed: 123 });
    const b = new Sampler(2, { ...base, seed: 123 });
    const n = 20_000;
    let ones = 0;
    const seqA: number[] = [];
    const seqB: number[] = [];
    for (let i = 0; i < n; i++) {
      const x = a.sample(logits);
      seqA.push(x);
      seqB.push(b.sample(logits));
      ones += x;
    }
    expect(seqA).toEqual(seqB);
    expect(Math.abs(ones / n - 0.75)).toBeLessThan(0.015);
    // temperature 0.5 squares the odds: p1 = 9/10
    const c = new Sampler(2, { ...base, seed: 5, temperature: 0.5 });
    let c1 = 0;
    for (let i = 0; i < n; i++) c1 += c.sample(logits);
    expect(Math.abs(c1 / n - 0.9)).toBeLessThan(0.015);
  });

  it('the fused sampling path equals the processors applied one by one', () => {
    const V = 300;
    const rng = new Mulberry32(99);
    const settings: SamplerSettings = {
      ...base,
      temperature: 0.4,
      topK: 40,
      repetitionPenalty: 1.15,
      repetitionPenaltyDecay: 0.99,
      repetitionCountClamp: 5,
      penaltyIgnore: [7, 2],
      eosBias: 1,
      eosId: 2,
      seed: 2024,
    };
    const fused = new Sampler(V, settings);
    // reference: same counts, same PRNG stream, processors in the documented order
    const counts = new EmaCounts(V);
    const draws = new Mulberry32(2024);
    const ignore = new Set(settings.penaltyIgnore);
    const scratch = new Float32Array(V);
    const probs = new Float64Array(V);
    let same = 0;
    for (let step = 0; step < 2000; step++) {
      const logits = Float32Array.from({ length: V }, () => (rng.next() - 0.5) * 8);
      const got = fused.sample(logits);
      const ref = Float32Array.from(logits);
      applyRepetitionPenalty(ref, counts, settings.repetitionPenalty, ignore);
      applyEosBias(ref, settings.eosId, settings.eosBias);
      applyTemperature(ref, settings.temperature);
      applyTopK(ref, settings.topK, scratch);
      softmax(ref, probs);
      const want = drawFromProbs(probs, draws.next());
      if (got === want) same++;
      fused.observe(got);
      counts.update(ignore.has(got) ? null : got, settings.repetitionPenaltyDecay, settings.repetitionCountClamp);
    }
    expect(same).toBeGreaterThanOrEqual(1998); // rounding may flip a draw sitting exactly on a boundary
  });
});

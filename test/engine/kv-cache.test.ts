import { describe, expect, it } from 'vitest';
import { KvStore, TextKvCache } from '../../src/model/kv-cache.js';
import { inverseFrequencies, rotateVectors, rotationTable } from '../../src/model/rope.js';

/** A step output [blocks][t][dh] whose entries encode (block, token, dim). */
function stepOutput(blocks: number, t: number, dh: number, firstToken: number): Float32Array {
  const a = new Float32Array(blocks * t * dh);
  for (let b = 0; b < blocks; b++)
    for (let i = 0; i < t; i++) for (let d = 0; d < dh; d++) a[(b * t + i) * dh + d] = b * 1000 + (firstToken + i) * 10 + d;
  return a;
}

/** Expected live layout for tokens `tokens` (their ids), [blocks][len][dh]. */
function layout(blocks: number, tokens: number[], dh: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < blocks; b++) for (const tok of tokens) for (let d = 0; d < dh; d++) out.push(b * 1000 + tok * 10 + d);
  return out;
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe('KvStore', () => {
  const shape = { layers: 2, kvHeads: 2, headDim: 2 };
  const blocks = 4;

  it('appends steps in the decoder input layout [L,1,H,P,Dh]', () => {
    const s = new KvStore(shape, 16);
    s.append(stepOutput(blocks, 3, 2, 0), stepOutput(blocks, 3, 2, 0), 3);
    s.append(stepOutput(blocks, 1, 2, 3), stepOutput(blocks, 1, 2, 3), 1);
    s.append(stepOutput(blocks, 2, 2, 4), stepOutput(blocks, 2, 2, 4), 2);
    expect(s.length).toBe(6);
    expect(s.dims()).toEqual([2, 1, 2, 6, 2]);
    expect(Array.from(s.keys())).toEqual(layout(blocks, range(0, 6), 2));
    expect(Array.from(s.values())).toEqual(layout(blocks, range(0, 6), 2));
    expect(s.usedBytes).toBe(2 * blocks * 6 * 2 * 4);
    expect(s.allocatedBytes).toBe(2 * blocks * 16 * 2 * 4);
  });

  it('appends part of a step output (srcStart/count)', () => {
    const s = new KvStore(shape, 8);
    s.append(stepOutput(blocks, 5, 2, 0), stepOutput(blocks, 5, 2, 0), 5, 3, 2);
    expect(Array.from(s.keys())).toEqual(layout(blocks, [3, 4], 2));
  });

  it('evicts a middle range and keeps the layout contiguous', () => {
    const s = new KvStore(shape, 16);
    s.append(stepOutput(blocks, 10, 2, 0), stepOutput(blocks, 10, 2, 0), 10);
    s.evict(2, 5);
    expect(s.length).toBe(5);
    expect(Array.from(s.keys())).toEqual(layout(blocks, [0, 1, 7, 8, 9], 2));
    s.append(stepOutput(blocks, 1, 2, 10), stepOutput(blocks, 1, 2, 10), 1);
    expect(Array.from(s.values())).toEqual(layout(blocks, [0, 1, 7, 8, 9, 10], 2));
    s.clear();
    expect(s.length).toBe(0);
    expect(s.keys().length).toBe(0);
  });

  it('re-rotates the moved keys by −count on eviction (values untouched)', () => {
    const dh = 4;
    const s = new KvStore({ layers: 1, kvHeads: 1, headDim: dh }, 8);
    const keys = Float32Array.from({ length: 6 * dh }, (_, i) => Math.sin(i + 1));
    const values = Float32Array.from({ length: 6 * dh }, (_, i) => Math.cos(i + 1));
    s.append(keys, values, 6);
    const inv = inverseFrequencies(dh, 10000);
    s.evict(1, 3, inv);
    const expected = Float32Array.from([...keys.subarray(0, dh), ...keys.subarray(4 * dh)]);
    const t = rotationTable(inv, -3);
    rotateVectors(expected, dh, 2, dh, t.cos, t.sin);
    expect(Array.from(s.keys())).toEqual(Array.from(expected));
    expect(Array.from(s.values())).toEqual([...values.subarray(0, dh), ...values.subarray(4 * dh)]);
  });

  it('grows when growable, refuses when not', () => {
    const g = new KvStore(shape, 2, true);
    for (let i = 0; i < 40; i++) g.append(stepOutput(blocks, 1, 2, i), stepOutput(blocks, 1, 2, i), 1);
    expect(g.capacity).toBeGreaterThanOrEqual(40);
    expect(Array.from(g.keys())).toEqual(layout(blocks, range(0, 40), 2));
    const f = new KvStore(shape, 2);
    f.append(stepOutput(blocks, 2, 2, 0), stepOutput(blocks, 2, 2, 0), 2);
    expect(() => f.append(stepOutput(blocks, 1, 2, 2), stepOutput(blocks, 1, 2, 2), 1)).toThrow(/full/);
  });
});

describe('rotary re-rotation', () => {
  const dh = 8;
  const inv = inverseFrequencies(dh, 10000);
  /** x·cos(pθ) + rotate_half(x)·sin(pθ), straight from the format document. */
  function ropeAt(x: number[], p: number): number[] {
    const half = dh / 2;
    return x.map((v, i) => {
      const k = i % half;
      const a = p * (inv[k] as number);
      const rot = i < half ? -(x[i + half] as number) : (x[i - half] as number);
      return v * Math.cos(a) + rot * Math.sin(a);
    });
  }

  it('rotating a key at position p by d gives the key at p + d', () => {
    const x = [0.3, -1.2, 0.8, 0.05, 1.1, -0.4, 0.9, -0.7];
    for (const [p, d] of [
      [0, 5],
      [17, -9],
      [200, -137],
    ] as const) {
      const k = Float32Array.from(ropeAt(x, p));
      const t = rotationTable(inv, d);
      rotateVectors(k, 0, 1, dh, t.cos, t.sin);
      const want = ropeAt(x, p + d);
      for (let i = 0; i < dh; i++) expect(k[i]).toBeCloseTo(want[i] as number, 5);
    }
  });

  it('θᵢ = theta^(−2i/Dh)', () => {
    expect(inv[0]).toBe(1);
    expect(inv[1]).toBeCloseTo(Math.pow(10000, -2 / 8), 6);
    expect(inv[3]).toBeCloseTo(Math.pow(10000, -6 / 8), 6);
  });
});

describe('TextKvCache eviction policy', () => {
  const shape = { layers: 1, kvHeads: 1, headDim: 2 };
  const inv = inverseFrequencies(2, 10000);
  const feed = (c: TextKvCache, n: number) => {
    const z = new Float32Array(n * 2);
    c.append(z, z, n);
  };
  /** One frame of `len` tokens as the caption session feeds it. */
  const frame = (c: TextKvCache, len: number) => {
    c.ensureRoom(2, true);
    c.markFrameStart();
    feed(c, 2);
    for (let i = 2; i < len; i++) {
      c.ensureRoom(1, false);
      feed(c, 1);
    }
  };

  it('keeps the sink, evicts at least a chunk, up to a frame boundary, and stays under the cap', () => {
    const c = new TextKvCache(shape, { maxTokens: 40, sinkTokens: 10, evictChunk: 8 }, inv);
    feed(c, 10); // prompt
    for (let f = 0; f < 5; f++) frame(c, 6); // 10 + 30 = 40: full, no eviction yet
    expect(c.length).toBe(40);
    expect(c.evictions).toBe(0);
    expect(c.frameStarts()).toEqual([10, 16, 22, 28, 34]);
    frame(c, 6); // needs 2 → at least 8 → next boundary at 10 + 12 = 22 → evict 12
    expect(c.evictions).toBe(1);
    expect(c.evictedTokens).toBe(12);
    expect(c.length).toBe(34);
    expect(c.frameStarts()).toEqual([10, 16, 22, 28]);
    for (let f = 0; f < 200; f++) {
      frame(c, 3 + (f % 5));
      expect(c.length).toBeLessThanOrEqual(40);
      const starts = c.frameStarts();
      expect(starts[0]).toBe(10); // the kept history starts at a frame right after the sink
      expect(starts.every((s, i) => i === 0 || s > (starts[i - 1] as number))).toBe(true);
    }
    expect(c.evictions).toBeGreaterThan(10);
  });

  it('falls back to the current frame start when no boundary is a chunk away', () => {
    const c = new TextKvCache(shape, { maxTokens: 30, sinkTokens: 10, evictChunk: 100 }, inv);
    feed(c, 10);
    frame(c, 10);
    frame(c, 10); // 30: full
    frame(c, 4); // needs room: no boundary 100 away → everything since the sink up to this frame
    expect(c.frameStarts()).toEqual([10]);
    expect(c.length).toBe(14);
  });

  it('counts image tokens in the cache (insertion) and after evictions', () => {
    const c = new TextKvCache(shape, { maxTokens: 60, sinkTokens: 5, evictChunk: 1 }, inv);
    feed(c, 5);
    const insertionFrame = () => {
      c.ensureRoom(1 + 4 + 1, true);
      c.markFrameStart();
      feed(c, 1);
      c.markImageTokens(4);
      feed(c, 5);
      c.ensureRoom(1, false);
      feed(c, 1); // EOS
    };
    for (let i = 0; i < 3; i++) insertionFrame();
    expect(c.imageTokens).toBe(12);
    expect(c.length).toBe(5 + 3 * 7);
    for (let i = 0; i < 30; i++) insertionFrame();
    expect(c.length).toBeLessThanOrEqual(60);
    expect(c.imageTokens).toBe(c.frameStarts().length * 4);
  });

  it('is unbounded with maxTokens = Infinity', () => {
    const c = new TextKvCache(shape, { maxTokens: Infinity, sinkTokens: 5, evictChunk: 8 }, inv, 4);
    feed(c, 5);
    for (let i = 0; i < 100; i++) frame(c, 5);
    expect(c.length).toBe(505);
    expect(c.evictions).toBe(0);
  });
});

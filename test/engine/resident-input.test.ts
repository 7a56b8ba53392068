import { describe, expect, it } from 'vitest';
import { ResidentInput, SlotPool, StridedKv } from '../../src/model/batch/slots.js';

// Pure data structure: no model needed. Shapes are tiny so every float can be checked.
const shape = { layers: 2, kvHeads: 2, headDim: 2 };
const { layers: L, kvHeads: H, headDim: Dh } = shape;

/** A one-row step output [L, 1, H, t, Dh] whose entries encode (layer, head, token, dim) and a stream tag. */
function step(tag: number, first: number, t: number): Float32Array {
  const a = new Float32Array(L * H * t * Dh);
  for (let l = 0; l < L; l++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < t; i++) for (let d = 0; d < Dh; d++) a[((l * H + h) * t + i) * Dh + d] = tag * 10000 + l * 1000 + h * 100 + (first + i) * 2 + d;
  return a;
}

function grow(kv: StridedKv, tag: number, n: number): void {
  const data = step(tag, kv.length, n);
  kv.appendRow(data, data, 1, 0, n);
}

/** Checks that row i of the input holds kv's entries (keys); `evicted`: how many of its first entries were evicted. */
function expectRow(input: { keys: Float32Array[]; size: number }, i: number, kv: StridedKv, tag: number, evicted = 0): void {
  for (let l = 0; l < L; l++)
    for (let h = 0; h < H; h++)
      for (let p = 0; p < kv.length; p++)
        for (let d = 0; d < Dh; d++) {
          const at = ((i * H + h) * input.size + p) * Dh + d;
          expect(input.keys[l]?.[at]).toBe(tag * 10000 + l * 1000 + h * 100 + (p + evicted) * 2 + d);
        }
}

/** Two streams in slots of `capacity` entries, holding `lengths` entries (tags 1 and 2). */
function twoStreams(capacity: number, lengths: [number, number]): [StridedKv, StridedKv] {
  const pool = new SlotPool(shape, capacity, 4);
  const streams: [StridedKv, StridedKv] = [pool.acquire(), pool.acquire()];
  streams.forEach((kv, i) => grow(kv, i + 1, lengths[i] as number));
  return streams;
}

describe('ResidentInput (the batched decoder cache inputs)', () => {
  it('sizes the entry axis to the longest row plus headroom, capped by what the rows can hold', () => {
    const [a, b] = twoStreams(40, [10, 4]);
    const input = new ResidentInput(L, H, Dh, 8);
    let x = input.prepare([a, b]);
    expect(x.size).toBe(18);
    expectRow(x, 0, a, 1);
    expectRow(x, 1, b, 2);
    grow(a, 1, 26); // 36 entries: longest + headroom (44) is past the slots' capacity (40)
    x = input.prepare([a, b]);
    expect(x.size).toBe(40);
    expectRow(x, 0, a, 1);
    expectRow(x, 1, b, 2); // unchanged, but moved to the new size
  });

  it('lays the rows out again at a smaller size once the padding is over twice the headroom', () => {
    const [a, b] = twoStreams(64, [40, 38]);
    const input = new ResidentInput(L, H, Dh, 4);
    expect(input.prepare([a, b]).size).toBe(44);
    a.evict(0, 12); // longest now 38: padding 6 ≤ 8, the layout stays
    expect(input.prepare([a, b]).size).toBe(44);
    b.evict(0, 20); // longest 28: padding 16 > 8
    const x = input.prepare([a, b]);
    expect(x.size).toBe(32);
    // Both rows moved to the new size, a (unchanged since the last run) as well as b; no
    // inverse frequencies were given to evict, so the kept entries keep their values.
    expectRow(x, 0, a, 1, 12);
    expectRow(x, 1, b, 2, 20);
  });

  it('keeps rows in place across runs and appends the new entries as the slots get them', () => {
    const [a, b] = twoStreams(64, [5, 7]);
    const input = new ResidentInput(L, H, Dh, 16);
    input.prepare([a, b]);
    expect(input.rank(a)).toBe(0);
    expect(input.rank(b)).toBe(1);
    // One run of two tokens per row: the outputs [L, 2, H, 2, Dh] hold row 0's and row 1's entries.
    const out = new Float32Array(L * 2 * H * 2 * Dh);
    const [sa, sb] = [step(1, 5, 2), step(2, 7, 2)];
    for (let l = 0; l < L; l++)
      for (const [r, s] of [sa, sb].entries()) out.set(s.subarray(l * H * 2 * Dh, (l + 1) * H * 2 * Dh), ((l * 2 + r) * H) * 2 * Dh);
    a.appendRow(out, out, 2, 0, 2);
    b.appendRow(out, out, 2, 1, 2);
    input.appendRows(out, out, 2);
    expect(input.rank(a)).toBe(0);
    const x = input.prepare([a, b]);
    expectRow(x, 0, a, 1);
    expectRow(x, 1, b, 2);
  });
});

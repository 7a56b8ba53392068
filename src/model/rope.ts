/**
 * Rotary position embedding, `rotate_half` layout (docs/model-format.md §Rotary positions).
 *
 * Keys are cached already rotated at their positions. Moving a cached key from position
 * p to p + delta (eviction re-rotation, DESIGN §3.5) rotates each pair (x[i], x[i + Dh/2])
 * by delta · θᵢ, θᵢ = ropeTheta^(−2i/Dh):
 *   x[i]        ← x[i]·cos − x[i + Dh/2]·sin
 *   x[i + Dh/2] ← x[i + Dh/2]·cos + x[i]·sin
 * which is `x·cos + rotate_half(x)·sin` for the angle delta·θᵢ.
 */

/** θᵢ for i < Dh/2, computed in float32 like the exporter (torch) does. */
export function inverseFrequencies(headDim: number, theta: number): Float64Array {
  const half = headDim / 2;
  const out = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const exponent = Math.fround(Math.fround(2 * i) / headDim);
    out[i] = Math.fround(1 / Math.fround(Math.pow(theta, exponent)));
  }
  return out;
}

/** Per-pair cos/sin of a rotation by `delta` positions. */
export function rotationTable(invFreq: Float64Array, delta: number): { cos: Float64Array; sin: Float64Array } {
  const cos = new Float64Array(invFreq.length);
  const sin = new Float64Array(invFreq.length);
  for (let i = 0; i < invFreq.length; i++) {
    const a = delta * (invFreq[i] as number);
    cos[i] = Math.cos(a);
    sin[i] = Math.sin(a);
  }
  return { cos, sin };
}

/**
 * Rotates `count` consecutive head vectors of `data` (each `headDim` floats, the first at
 * `offset`) by the rotation given by `cos`/`sin` (from `rotationTable`). In place.
 */
export function rotateVectors(
  data: Float32Array,
  offset: number,
  count: number,
  headDim: number,
  cos: Float64Array,
  sin: Float64Array,
): void {
  const half = headDim >> 1;
  for (let v = 0; v < count; v++) {
    const base = offset + v * headDim;
    for (let i = 0; i < half; i++) {
      const a = base + i;
      const b = a + half;
      const x1 = data[a] as number;
      const x2 = data[b] as number;
      const c = cos[i] as number;
      const s = sin[i] as number;
      data[a] = x1 * c - x2 * s;
      data[b] = x2 * c + x1 * s;
    }
  }
}

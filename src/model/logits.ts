/**
 * Pure functions on a step's logits that both the session's sampler (src/session/sampler.ts,
 * DESIGN §3.3) and the batched engine's workers use: the stop-token bias (step 2 of the
 * sampler) and the greedy choice. One home, so that a worker's guess of a greedy stream's
 * next token applies the same formulas as the stream's sampler.
 */

export function applyEosBias(logits: Float32Array, eosId: number, bias: number): void {
  if (bias !== 0 && eosId < logits.length) logits[eosId] = (logits[eosId] as number) + bias;
}

/** Step 2 on every stop id: ℓ + add, then ·mul (ℓ ≥ 0) or /mul (ℓ < 0). In place. */
export function applyStopBias(logits: Float32Array, stopIds: readonly number[], add: number, mul: number): void {
  for (const id of stopIds) {
    applyEosBias(logits, id, add);
    if (mul === 1 || id >= logits.length) continue;
    const l = logits[id] as number;
    logits[id] = l < 0 ? l / mul : l * mul;
  }
}

/** First index of the largest value. */
export function argmax(values: Float32Array): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/**
 * The retry backoff rule of casa-live, in one place: the ingest's reconnects (retry-loop.ts)
 * and the daemon's pipeline restarts (src/server/stream-runner.ts) both wait this long.
 */

/**
 * Delay in ms before retry `attempt` (1, 2, …): exponential from `initialMs`
 * (initialMs · 2^(attempt−1)), capped at `maxMs`, with "equal jitter" (uniform in [d/2, d]) so
 * that many streams do not retry in step. `maxMs` is a hard maximum: the result never exceeds it.
 */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const cap = Math.max(0, maxMs);
  // 0 · 2^n would be NaN once 2^n overflows to Infinity.
  const d = initialMs > 0 ? Math.min(cap, initialMs * 2 ** Math.max(0, attempt - 1)) : 0;
  return Math.min(cap, Math.round(d / 2 + random() * (d / 2)));
}

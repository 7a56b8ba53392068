/** Small statistics helpers of the benchmark suite (no dependencies). */

/** Sorted copy (ascending). */
export function sorted(xs: readonly number[]): number[] {
  return Array.from(xs).sort((a, b) => a - b);
}

/**
 * Percentile by linear interpolation between closest ranks (numpy's default), p in [0, 100].
 * NaN for an empty list.
 */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = s[lo] as number;
  const b = s[hi] as number;
  return a + (b - a) * (rank - lo);
}

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  let t = 0;
  for (const x of xs) t += x;
  return t / xs.length;
}

export function max(xs: readonly number[]): number {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  return m;
}

export function min(xs: readonly number[]): number {
  let m = Infinity;
  for (const x of xs) if (x < m) m = x;
  return m;
}

export interface Quantiles {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function quantiles(xs: readonly number[]): Quantiles {
  return { n: xs.length, p50: round(percentile(xs, 50)), p95: round(percentile(xs, 95)), p99: round(percentile(xs, 99)), max: round(xs.length ? max(xs) : NaN) };
}

/** Centred rolling median with the given window (odd or even), same length as xs. */
export function rollingMedian(xs: readonly number[], window: number): number[] {
  const half = Math.floor(window / 2);
  const out: number[] = [];
  for (let i = 0; i < xs.length; i++) {
    const lo = Math.max(0, i - half);
    const hi = Math.min(xs.length, i + half + 1);
    out.push(median(xs.slice(lo, hi)));
  }
  return out;
}

/** Element-wise median of several equally long (or truncated to the shortest) series. */
export function medianSeries(series: readonly (readonly number[])[]): number[] {
  if (series.length === 0) return [];
  const n = Math.min(...series.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(median(series.map((s) => s[i] as number)));
  return out;
}

/** Least-squares line y = a + b·x. */
export function linearFit(xs: readonly number[], ys: readonly number[]): { intercept: number; slope: number; r2: number } {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return { intercept: NaN, slope: NaN, r2: NaN };
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i] as number;
    sy += ys[i] as number;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = (xs[i] as number) - mx;
    const dy = (ys[i] as number) - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  const r2 = syy === 0 ? 1 : (sxy * sxy) / (sxx * syy);
  return { intercept, slope, r2 };
}

/** Rounds to `digits` decimals (default 3); keeps NaN/Infinity. */
export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function roundAll(xs: readonly number[], digits = 3): number[] {
  return xs.map((x) => round(x, digits));
}

/** Histogram with fixed-width bins from 0: counts[i] = samples in [i·bin, (i+1)·bin). */
export function histogram(xs: readonly number[], bin: number): { binMs: number; counts: number[] } {
  const counts: number[] = [];
  for (const x of xs) {
    const i = Math.max(0, Math.floor(x / bin));
    while (counts.length <= i) counts.push(0);
    counts[i] = (counts[i] as number) + 1;
  }
  return { binMs: bin, counts };
}

/** A frame of a live stream: its time in the stream (s) and when it came out of ffmpeg (ms). */
export interface Arrival {
  pts: number;
  at: number;
}

/**
 * A frame's delivery delay (ms): its arrival less its pts, less the least such offset of its
 * stream — how much later than the stream's fastest-delivered frame it came. The constant
 * part (connecting, probing) cancels; what stays is the delivery's jitter and any wait of the
 * stream's decoder for a core.
 */
export function deliveryDelay(stream: readonly Arrival[]): (a: Arrival) => number {
  const offset = (a: Arrival): number => a.at - a.pts * 1000;
  const least = min(stream.map(offset));
  return (a) => offset(a) - least;
}

/**
 * Hand-written SVG line charts for the benchmark results (no plotting dependency). The
 * output is a standalone SVG file that GitHub and browsers render.
 */

export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  color: string;
  /** Stroke dash pattern, e.g. "6 4". */
  dash?: string;
  /** Draw a circle at each point (and no line when `line` is false). */
  markers?: boolean;
  line?: boolean;
  width?: number;
}

export interface RefLine {
  /** Horizontal line at this y. */
  y: number;
  label: string;
  color?: string;
}

export interface ChartOptions {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  refLines?: RefLine[];
  /** Logarithmic y axis (base 10); non-positive values are dropped. */
  logY?: boolean;
  /** Logarithmic x axis (base 2, ticked at powers of 2); non-positive values are dropped. */
  logX?: boolean;
  xMin?: number;
  xMax?: number;
  yMin?: number;
  yMax?: number;
  width?: number;
  height?: number;
  /** Where the legend box goes (default top-left). */
  legend?: 'top-left' | 'top-right' | 'bottom-left' | 'bottom-right' | 'middle-right';
}

export const COLORS = {
  casa: '#1f77b4',
  insertion: '#d62728',
  third: '#2ca02c',
  fourth: '#9467bd',
  grey: '#7f7f7f',
  budget: '#ff7f0e',
};

function lowest(xs: readonly number[], otherwise: number): number {
  let m = Infinity;
  for (const x of xs) if (x < m) m = x;
  return xs.length ? m : otherwise;
}

function highest(xs: readonly number[], otherwise: number): number {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  return xs.length ? m : otherwise;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** "Nice" tick values covering [lo, hi] (about `count` of them). */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm >= 5 ? 10 : norm >= 2 ? 5 : norm >= 1 ? 2 : 1) * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  if (a >= 100) return String(Math.round(v));
  if (a >= 1) return String(+v.toFixed(1));
  return String(+v.toPrecision(2));
}

/** The plot area inside the margins, and the maps from data to SVG coordinates. */
interface ChartFrame {
  W: number;
  H: number;
  m: { left: number; right: number; top: number; bottom: number };
  pw: number;
  ph: number;
  logY: boolean;
  logX: boolean;
  x0: number;
  x1: number;
  xTicks: number[];
  yTicks: number[];
  sx: (x: number) => number;
  sy: (y: number) => number;
}

/** A point is drawn when both coordinates are finite (and y is positive on a log axis). */
function drawable(logY: boolean, logX = false): (p: readonly [number, number]) => boolean {
  return ([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0) && (!logX || x > 0);
}

/** Renders a line chart as an SVG document. */
export function lineChart(o: ChartOptions): string {
  const logY = o.logY === true;
  const refs = (o.refLines ?? []).filter((r) => Number.isFinite(r.y) && (!logY || r.y > 0));
  const f = chartFrame(o, refs);
  const out: string[] = [...frameSvg(o, f), ...refLinesSvg(refs, f)];
  for (const s of o.series) out.push(...seriesSvg(s, f));
  out.push(...legendSvg(o, f), '</svg>');
  return out.join('\n') + '\n';
}

/** The axes' ranges and ticks from the data, the reference lines and the options. */
function chartFrame(o: ChartOptions, refs: readonly RefLine[]): ChartFrame {
  const W = o.width ?? 760;
  const H = o.height ?? 420;
  const m = { left: 72, right: 20, top: o.subtitle ? 58 : 44, bottom: 54 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const logY = o.logY === true;
  const logX = o.logX === true;
  const all = o.series.flatMap((s) => s.points).filter(drawable(logY, logX));
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y).concat(refs.map((r) => r.y));
  let x0 = o.xMin ?? lowest(xs, logX ? 1 : 0);
  let x1 = o.xMax ?? highest(xs, logX ? 2 : 1);
  if (x1 <= x0) x1 = logX ? x0 * 2 : x0 + 1;
  const { y0, y1, yTicks } = logY ? logAxis(o, ys) : linearAxis(o, ys);
  const xTicks = logX ? powersOfTwo(x0, x1) : niceTicks(x0, x1);
  if (!logX && o.xMin === undefined && xTicks.length && (xTicks[0] as number) < x0) x0 = xTicks[0] as number;
  const sx = (x: number): number =>
    logX ? m.left + ((Math.log2(x) - Math.log2(x0)) / (Math.log2(x1) - Math.log2(x0))) * pw : m.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number): number =>
    logY ? m.top + ph - ((Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))) * ph : m.top + ph - ((y - y0) / (y1 - y0)) * ph;
  return { W, H, m, pw, ph, logY, logX, x0, x1, xTicks, yTicks, sx, sy };
}

/** Powers of 2 from lo to hi. */
function powersOfTwo(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let v = 2 ** Math.ceil(Math.log2(lo)); v <= hi * (1 + 1e-9); v *= 2) ticks.push(v);
  return ticks;
}

/** A log10 y axis over whole decades, ticked at 1, 2 and 5 of each. */
function logAxis(o: ChartOptions, ys: readonly number[]): { y0: number; y1: number; yTicks: number[] } {
  const lo = o.yMin ?? lowest(ys, 1);
  const hi = o.yMax ?? highest(ys, 10);
  const y0 = 10 ** Math.floor(Math.log10(lo));
  let y1 = 10 ** Math.ceil(Math.log10(hi));
  if (y1 <= y0) y1 = y0 * 10;
  const yTicks: number[] = [];
  for (let d = Math.log10(y0); d <= Math.log10(y1) + 1e-9; d++) {
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** d;
      if (v >= y0 * (1 - 1e-9) && v <= y1 * (1 + 1e-9)) yTicks.push(v);
    }
  }
  return { y0, y1, yTicks };
}

/** A linear y axis from 0 (or below) to a little over the highest value, on nice ticks. */
function linearAxis(o: ChartOptions, ys: readonly number[]): { y0: number; y1: number; yTicks: number[] } {
  const y0 = o.yMin ?? Math.min(0, lowest(ys, 0));
  let y1 = o.yMax ?? (ys.length ? highest(ys, 1) * 1.08 : 1);
  if (y1 <= y0) y1 = y0 + 1;
  const yTicks = niceTicks(y0, y1);
  y1 = Math.max(y1, yTicks[yTicks.length - 1] ?? y1);
  return { y0, y1, yTicks };
}

/** The document's opening, titles, grid, ticks, plot border, axis labels and clip path. */
function frameSvg(o: ChartOptions, f: ChartFrame): string[] {
  const { W, H, m, pw, ph } = f;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`,
  );
  if (o.subtitle) out.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${esc(o.subtitle)}</text>`);
  // grid and ticks
  for (const t of f.yTicks) {
    const y = f.sy(t).toFixed(1);
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#333">${fmt(t)}</text>`);
  }
  for (const t of f.xTicks) {
    if (t < f.x0 || t > f.x1) continue;
    const x = f.sx(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle" fill="#333">${fmt(t)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}${f.logX ? ' (log scale)' : ''}</text>`);
  out.push(
    `<text x="16" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${m.top + ph / 2})">${esc(o.yLabel)}${f.logY ? ' (log scale)' : ''}</text>`,
  );
  out.push(`<clipPath id="plot"><rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}"/></clipPath>`);
  return out;
}

function refLinesSvg(refs: readonly RefLine[], f: ChartFrame): string[] {
  const out: string[] = [];
  for (const r of refs) {
    const y = f.sy(r.y).toFixed(1);
    const c = r.color ?? COLORS.budget;
    out.push(`<line x1="${f.m.left}" y1="${y}" x2="${f.m.left + f.pw}" y2="${y}" stroke="${c}" stroke-dasharray="6 4" stroke-width="1.5"/>`);
    out.push(`<text x="${f.m.left + f.pw - 4}" y="${(+y - 5).toFixed(1)}" text-anchor="end" fill="${c}">${esc(r.label)}</text>`);
  }
  return out;
}

/** One series: its line (clipped to the plot) and/or a marker at each point. */
function seriesSvg(s: Series, f: ChartFrame): string[] {
  const pts = s.points.filter(drawable(f.logY, f.logX));
  const out: string[] = [];
  if (pts.length === 0) return out;
  if (s.line !== false && pts.length > 1) {
    const d = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${f.sx(x).toFixed(1)},${f.sy(y).toFixed(1)}`).join('');
    out.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 1.8}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} clip-path="url(#plot)"/>`,
    );
  }
  if (s.markers || pts.length === 1) {
    for (const [x, y] of pts) out.push(`<circle cx="${f.sx(x).toFixed(1)}" cy="${f.sy(y).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
  }
  return out;
}

/** The legend, on a white box where o.legend puts it. */
function legendSvg(o: ChartOptions, f: ChartFrame): string[] {
  const { m, pw, ph } = f;
  const out: string[] = [];
  const longest = Math.max(0, ...o.series.map((s) => s.name.length));
  const boxW = Math.round(longest * 6.4 + 44);
  const boxH = o.series.length * 17 + 6;
  const where = o.legend ?? 'top-left';
  const bx = where.endsWith('right') ? m.left + pw - 6 - boxW : m.left + 6;
  const by = where.startsWith('bottom') ? m.top + ph - 6 - boxH : where === 'middle-right' ? m.top + (ph - boxH) / 2 : m.top + 4;
  if (o.series.length) {
    out.push(`<rect x="${bx}" y="${by}" width="${boxW}" height="${boxH}" fill="#ffffff" fill-opacity="0.88" stroke="#dddddd"/>`);
  }
  let ly = by + 14;
  for (const s of o.series) {
    const lx = bx + 6;
    out.push(
      s.line === false
        ? `<circle cx="${lx + 11}" cy="${ly - 4}" r="3.5" fill="${s.color}"/>`
        : `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
    );
    out.push(`<text x="${lx + 28}" y="${ly}" fill="#222">${esc(s.name)}</text>`);
    ly += 17;
  }
  return out;
}

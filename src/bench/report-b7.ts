/** B7's plot and SUMMARY.md section, drawn from what its JSON file holds. */
import { f, type SuiteResult } from './common.js';
import { mdTable } from './markdown.js';
import { COLORS, lineChart, type Series } from './svg.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = Record<string, any>;

const ENGINE_COLORS: Record<string, string> = { unbatched: COLORS.insertion, batched: COLORS.casa };

export function b7Plots(r: Pick<SuiteResult, 'config' | 'results' | 'samples'>): Record<string, string> {
  const rows = (r.results.rows as Any[] | undefined) ?? [];
  const names = Object.keys((r.config as Any).engines ?? {});
  const runs = (r.samples.runs as Any[] | undefined) ?? [];
  const series: Series[] = [];
  names.forEach((name, i) => {
    const color = ENGINE_COLORS[name] ?? [COLORS.third, COLORS.fourth][i % 2] ?? COLORS.grey;
    series.push({ name: `${name} (median)`, color, markers: true, points: rows.filter((x) => x.engines[name]).map((x) => [x.sessions, x.engines[name].fps]) });
    series.push({ name: `${name}, each run`, color, line: false, points: runs.filter((x) => x.engine === name).map((x) => [x.sessions, x.fps]) });
  });
  const perFrame = (r.results.flopsPerFrame as Any | null)?.atCap as number | undefined;
  const peak = (r.results.machinePeak as Any | null)?.gflops as number | undefined;
  const refLines = perFrame && peak ? [{ y: (peak * 1e9) / perFrame, label: `matmul peak ÷ FLOPs per frame: ${Math.round((peak * 1e9) / perFrame)} frames/s` }] : [];
  return {
    'b7-throughput.svg': lineChart({
      title: 'B7: captioned frames per second vs concurrent sessions',
      subtitle: `5 tokens per frame, sessions captioning back to back; ${(r.config as Any).repeats} runs per point, fresh process each`,
      xLabel: 'concurrent sessions',
      yLabel: 'frames per second (all sessions)',
      logX: true,
      logY: true,
      series,
      refLines,
      legend: 'bottom-right',
    }),
  };
}

export function b7Section(r: SuiteResult): string[] {
  const x = r.results as Any;
  const names = Object.keys((r.config as Any).engines ?? {});
  const rows = ((x.rows as Any[]) ?? []).map((row) => [
    row.sessions,
    ...names.map((n) => (row.engines[n] ? `${f(row.engines[n].fps, 0)} (${f(row.engines[n].framesPerCpuSecond, 0)})` : '—')),
    row.speedup === null ? '—' : `**${f(row.speedup, 2)}×**`,
    ...names.map((n) => (row.engines[n] ? f(row.engines[n].eventLoopDelayP99Ms, 1) : '—')),
    row.engines.batched?.rowsPerDecoderRun ?? '—',
    row.engines.batched?.shareOfPeak === null || row.engines.batched?.shareOfPeak === undefined ? '—' : `${f(row.engines.batched.gflops, 2)} (${f(row.engines.batched.shareOfPeak * 100, 1)}%)`,
  ]);
  const fl = x.flopsPerFrame as Any | null;
  const peak = x.machinePeak as Any | null;
  const model = ((x.matmul?.onnxruntime as Any[]) ?? []).filter((m) => m.m === 64 && m.k === 128 && m.n === 384);
  return [
    `Captioned frames per second, all sessions together (frames per CPU-second of the process in brackets), ${(r.config as Any).tokensPerFrame} tokens per frame, median of ${(r.config as Any).repeats} runs:`,
    '',
    ...mdTable(
      ['sessions', ...names.map((n) => `${n} frames/s`), 'batched ÷ unbatched', ...names.map((n) => `${n} event-loop p99 ms`), 'rows per decoder run', 'batched GFLOP/s (of peak)'],
      rows,
    ),
    '',
    fl
      ? `- FLOPs per frame, counted from the graphs: ${f(fl.constant / 1e6, 1)} M + ${f(fl.perCacheToken / 1e3, 1)} k per cached token (${f(fl.atCap / 1e6, 1)} M at the ${(r.config as Any).bundle?.maxContextTokens}-token cap).`
      : '- FLOPs per frame: not counted (see below).',
    peak ? `- The machine's fp32 matrix-product peak: **${f(peak.gflops, 1)} GFLOP/s** (${peak.how}).` : '- Matrix-product peak: not measured.',
    ...(model.length ? [`- A model-sized product (64×128×384) in onnxruntime: ${model.map((m) => `${f(m.gflops, 1)} GFLOP/s with ${m.threads} thread${m.threads === 1 ? '' : 's'}`).join(', ')}.`] : []),
  ];
}

export function b7Headline(r: SuiteResult): string {
  const rows = ((r.results as Any).rows as Any[]) ?? [];
  const at = rows.filter((x) => x.sessions >= 64 && x.speedup !== null);
  const best = rows.reduce<Any | undefined>((a, b) => ((b.engines.batched?.fps ?? 0) > (a?.engines.batched?.fps ?? 0) ? b : a), undefined);
  return `batched ${at.map((x) => `${f(x.speedup, 1)}×`).join(' / ') || '—'} unbatched at ${at.map((x) => x.sessions).join(' / ')} sessions; best ${f(best?.engines.batched?.fps, 0)} frames/s (${best?.sessions} sessions, ${f((best?.engines.batched?.shareOfPeak ?? NaN) * 100, 1)}% of the matmul peak)`;
}

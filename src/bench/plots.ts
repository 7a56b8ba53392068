/**
 * The plots of each suite, drawn from what its JSON file holds (config, results, raw
 * samples) — so `casa-live bench --replot` can redraw them from committed results.
 */
import type { SuiteId, SuiteResult } from './common.js';
import { linearFit, max, medianSeries, rollingMedian } from './stats.js';
import { b7Plots } from './report-b7.js';
import { COLORS, lineChart, type Series } from './svg.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = Record<string, any>;
export type PlotInput = Pick<SuiteResult, 'suite' | 'config' | 'results' | 'samples'>;
type Pts = Array<[number, number]>;

const pts = (ys: readonly number[], scale = 1, from = 0): Pts => ys.slice(from).map((y, i) => [from + i + 1, y * scale]);

function b1(r: PlotInput): Record<string, string> {
  const c = r.config as Any;
  const N = c.frames as number;
  const casa = (r.samples.casa as Any[]) ?? [];
  const ins = (r.samples.insertion as Any[]) ?? [];
  const comp = (r.samples.compressed as Any[] | undefined) ?? [];
  const runs: B1Runs = { c, res: r.results as Any, N, casa, ins, comp, extended: ins[0] && (ins[0].frameMs as number[]).length > N ? ins[0] : undefined };
  return {
    'b1-frame-time.svg': b1FrameTime(runs),
    'b1-kv-bytes.svg': b1KvBytes(runs),
    'b1-rss.svg': b1Rss(runs),
  };
}

/** What the B1 plots draw from: config, results, the runs, and the insertion run that went on past N frames. */
interface B1Runs {
  c: Any;
  res: Any;
  N: number;
  casa: Any[];
  ins: Any[];
  /** Token-compressed insertion, one run per variant (imageTokensPerFrame). */
  comp: Any[];
  extended: Any | undefined;
}

/** The compressed variants' line styles: the insertion colour, dashed the more the fewer tokens. */
const COMPRESSED_DASH = ['2 3', '6 3', '10 3 2 3'];

function compressedSeries(comp: readonly Any[], pick: (x: Any) => Pts): Series[] {
  return comp.map((x, i) => ({ name: `insertion, ${x.imageTokensPerFrame} image token${x.imageTokensPerFrame === 1 ? '' : 's'}/frame (compressed)`, color: COLORS.fourth, dash: COMPRESSED_DASH[i % COMPRESSED_DASH.length] as string, points: pick(x) }));
}

function b1FrameTime({ c, res, N, casa, ins, comp, extended }: B1Runs): string {
  const realtimeMs = (c.realtimeMs as number) ?? 500;
  const cap = c.casa?.maxContextTokens as number | undefined;
  const casaMed = medianSeries(casa.map((x) => x.frameMs as number[]));
  const insMed = medianSeries(ins.map((x) => (x.frameMs as number[]).slice(0, N)));
  const insSeries = extended ? insMed.concat((extended.frameMs as number[]).slice(N)) : insMed;
  const smooth = rollingMedian(insSeries, 21);
  const frameSeries: Series[] = [
    { name: `CASA (${casa[0]?.model ?? ''}, cap ${cap ?? '?'} tokens)`, color: COLORS.casa, points: pts(rollingMedian(casaMed, 21)) },
    { name: `insertion (${ins[0]?.model ?? ''}, unbounded)`, color: COLORS.insertion, points: pts(smooth.slice(0, N)) },
    ...compressedSeries(comp, (x) => pts(rollingMedian(x.frameMs as number[], 21))),
  ];
  if (extended) frameSeries.push({ name: 'insertion, run 1 continued', color: COLORS.insertion, dash: '4 3', points: pts(smooth, 1, N) });
  const rt = res.insertion?.realtimeLostAtFrame as number | undefined;
  if (res.insertion?.realtimeLostHow === 'extrapolated' && Number.isFinite(rt)) {
    const from = Math.floor(insMed.length / 2);
    const fit = linearFit(insMed.slice(from).map((_, i) => from + i + 1), insMed.slice(from));
    frameSeries.push({
      name: `insertion, linear extrapolation (${rt} frames)`,
      color: COLORS.grey,
      dash: '2 4',
      points: [
        [insSeries.length, fit.intercept + fit.slope * insSeries.length],
        [rt as number, realtimeMs],
      ],
    });
  }
  return lineChart({
    title: 'B1: per-frame wall time vs frames',
    subtitle: `${c.tokensPerFrame} tokens/frame, 1 thread; median of ${casa.length} CASA / ${ins.length} insertion runs, 21-frame rolling median`,
    xLabel: 'frames into the stream',
    yLabel: 'ms per frame',
    logY: true,
    series: frameSeries,
    refLines: [{ y: realtimeMs, label: `real time at 2 fps (${realtimeMs} ms)` }],
    legend: 'bottom-right',
  });
}

function b1KvBytes({ c, res, N, casa, ins, comp, extended }: B1Runs): string {
  const budget = (c.kvBudgetBytes as number) ?? 256 * 2 ** 20;
  const cap = c.casa?.maxContextTokens as number | undefined;
  const insKv = medianSeries(ins.map((x) => (x.kvBytes as number[]).slice(0, N)));
  const kvAll = extended ? insKv.concat((extended.kvBytes as number[]).slice(N)) : insKv;
  const casaKv = medianSeries(casa.map((x) => x.kvBytes as number[]));
  const kvSeries: Series[] = [
    { name: `CASA (≤ ${(max(casaKv) / 2 ** 20).toFixed(2)} MiB)`, color: COLORS.casa, points: pts(casaKv, 2 ** -20), width: 2.5 },
    { name: `insertion (${c.insertion?.imageTokensPerFrame ?? '?'} image tokens/frame)`, color: COLORS.insertion, points: pts(kvAll, 2 ** -20) },
    ...compressedSeries(comp, (x) => pts(x.kvBytes as number[], 2 ** -20)),
  ];
  const kvCross = res.insertion?.kvBudgetCrossedAtFrame as number | undefined;
  if (res.insertion?.kvBudgetCrossedHow === 'extrapolated' && Number.isFinite(kvCross) && kvAll.length) {
    kvSeries.push({
      name: `insertion, extrapolated: ${Math.round(budget / 2 ** 20)} MiB at frame ${kvCross}`,
      color: COLORS.insertion,
      dash: '3 4',
      points: [
        [kvAll.length, (kvAll[kvAll.length - 1] as number) / 2 ** 20],
        [kvCross as number, budget / 2 ** 20],
      ],
    });
  }
  return lineChart({
    title: 'B1: KV cache bytes in use vs frames',
    subtitle: `CASA: text only, capped at ${cap ?? '?'} tokens; insertion: image tokens + text per frame, unbounded${comp.length ? '; compression slows the growth, CASA stays flat' : ''}`,
    xLabel: 'frames into the stream',
    yLabel: 'KV bytes in use (MiB)',
    series: kvSeries,
    refLines: [{ y: budget / 2 ** 20, label: `budget ${Math.round(budget / 2 ** 20)} MiB per stream` }],
    legend: 'top-left',
  });
}

function b1Rss({ casa, ins, comp }: B1Runs): string {
  const rss = (x: Any): Pts => (x.rss as Array<[number, number]>).map(([f, b]) => [f, b / 2 ** 20]);
  return lineChart({
    title: 'B1: process RSS vs frames',
    subtitle: 'one process per run; RSS sampled every 10 frames',
    xLabel: 'frames into the stream',
    yLabel: 'RSS (MiB)',
    yMin: 0,
    series: [
      ...casa.map((x, i) => ({ name: `CASA run ${i + 1}`, color: COLORS.casa, ...(i ? { dash: '5 3' } : {}), points: rss(x) })),
      ...ins.map((x, i) => ({ name: `insertion run ${i + 1}`, color: COLORS.insertion, ...(i ? { dash: '5 3' } : {}), points: rss(x) })),
      ...compressedSeries(comp, rss),
    ],
    legend: 'bottom-right',
  });
}

function b2(r: PlotInput): Record<string, string> {
  const c = r.config as Any;
  const res = r.results as Any;
  const node = (r.samples.casaLive as Any[] | undefined)?.[0];
  const torch = (r.samples.pytorch as Any[] | undefined)?.[0];
  if (!node || !torch) return {};
  return {
    'b2-frame-time.svg': lineChart({
      title: 'B2: per-frame time, casa-live vs PyTorch reference',
      subtitle: `same model, frames, ${c.threads} thread, ${c.tokensPerFrame} tokens/frame, no context cap; run 1 of each`,
      xLabel: 'frame',
      yLabel: 'ms per frame',
      yMin: 0,
      series: [
        { name: `casa-live (onnxruntime-node), ${res.casaLiveFps} frames/s (median of runs)`, color: COLORS.casa, points: pts(node.frameMs as number[]) },
        { name: `PyTorch ${res.pytorchVersions?.torch ?? ''} eager, ${res.pytorchFps} frames/s`, color: COLORS.insertion, points: pts(torch.frameMs as number[]) },
      ],
      legend: 'top-left',
    }),
  };
}

function b3(r: PlotInput): Record<string, string> {
  const c = r.config as Any;
  const res = r.results as Any;
  const trials = ((res.trials as Any[]) ?? []).slice().sort((a, b) => a.streams - b.streams);
  const p99 = (t: Any): number => Math.max(1, Number.isFinite(t.p99CaptionMs) ? t.p99CaptionMs : 1e4);
  return {
    'b3-capacity.svg': lineChart({
      title: 'B3: p99 frame→caption latency vs concurrent 2-fps streams',
      subtitle: `every trial (search ${c.searchMeasureS} s, confirmation ${c.confirmMeasureS} s); ${c.tokensPerFrame} tokens/frame; capacity ${res.capacityIsLowerBound ? '≥ ' : ''}${res.capacity}`,
      xLabel: 'concurrent streams',
      yLabel: 'p99 latency (ms)',
      logY: true,
      xMin: 0,
      series: [
        { name: 'passed (no drops, p99 ≤ 500 ms)', color: COLORS.third, line: false, markers: true, points: trials.filter((t) => t.pass).map((t) => [t.streams, p99(t)]) },
        { name: 'failed', color: COLORS.insertion, line: false, markers: true, points: trials.filter((t) => !t.pass).map((t) => [t.streams, p99(t)]) },
        ...ingestSeries((res.ingestTrials as Any[] | undefined) ?? []),
      ],
      refLines: [{ y: (c.latencyBudgetMs as number) ?? 500, label: `budget ${(c.latencyBudgetMs as number) ?? 500} ms` }],
      legend: 'top-left',
    }),
  };
}

/** B3's ingest-only trials: the spread of their frames' lateness (p99 − p50, the delivery's jitter), passed and failed. */
function ingestSeries(trials: Any[]): Series[] {
  if (!trials.length) return [];
  const late = (t: Any): number => Math.max(1, Number.isFinite(t.latenessP99Ms) ? t.latenessP99Ms : 1e4);
  return [
    { name: 'ingest only, passed (frame lateness p99 − p50)', color: COLORS.grey, line: false, markers: true, points: trials.filter((t) => t.pass).map((t) => [t.streams, late(t)]) },
    { name: 'ingest only, failed', color: COLORS.fourth, line: false, markers: true, points: trials.filter((t) => !t.pass).map((t) => [t.streams, late(t)]) },
  ];
}

function cdf(xs: readonly number[]): Pts {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (!n) return [];
  const step = Math.max(1, Math.floor(n / 400));
  const out: Pts = [];
  for (let i = 0; i < n; i += step) out.push([s[i] as number, (i + 1) / n]);
  out.push([s[n - 1] as number, 1]);
  return out;
}

/** The CDF of a histogram (fixed-width bins from 0): one point at the top of each non-empty bin. */
function histogramCdf(h: { binMs: number; counts: number[] }): Pts {
  const total = h.counts.reduce((a, b) => a + b, 0);
  const out: Pts = [];
  let acc = 0;
  h.counts.forEach((n, i) => {
    acc += n;
    if (n > 0) out.push([(i + 1) * h.binMs, acc / total]);
  });
  return out;
}

function b4(r: PlotInput): Record<string, string> {
  const c = r.config as Any;
  const one = (r.samples.oneStream as Any[]) ?? [];
  const cap = (r.samples.atCapacity as Any[]) ?? [];
  const all = (xs: Any[], k: string): number[] => xs.flatMap((x) => x[k] as number[]);
  const capStreams = cap[0]?.streams as number | undefined;
  return {
    'b4-latency-cdf.svg': lineChart({
      title: 'B4: latency distribution (CDF)',
      subtitle: `frame arrival → first token / caption; 1 stream (${c.singleRepeats} × ${c.measureS} s)${capStreams ? ` and ${capStreams} streams (capacity, ${cap.length} runs)` : ''}`,
      xLabel: 'latency (ms)',
      yLabel: 'fraction of frames',
      yMin: 0,
      yMax: 1,
      xMin: 0,
      series: [
        { name: '1 stream: first token', color: COLORS.casa, dash: '5 3', points: cdf(all(one, 'firstTokenMs')) },
        { name: '1 stream: caption', color: COLORS.casa, points: cdf(all(one, 'captionMs')) },
        ...Object.entries((r.samples.oneStreamByEngine as Record<string, Any[]> | undefined) ?? {})
          .slice(1)
          .map(([name, runs], i) => ({ name: `1 stream, ${name} engine: caption`, color: i === 0 ? COLORS.third : COLORS.fourth, points: cdf(all(runs, 'captionMs')) })),
        ...(capStreams
          ? [
              { name: `${capStreams} streams: first token`, color: COLORS.insertion, dash: '5 3', points: cdf(all(cap, 'firstTokenMs')) },
              { name: `${capStreams} streams: caption`, color: COLORS.insertion, points: cdf(all(cap, 'captionMs')) },
            ]
          : []),
      ],
      legend: 'bottom-right',
    }),
  };
}

function b5(r: PlotInput): Record<string, string> {
  const c = r.config as Any;
  const variants = (r.samples.variants as Any[]) ?? [];
  const pooled = (r.results.variants as Any[]) ?? [];
  return {
    'b5-fanout-cdf.svg': lineChart({
      title: `B5: caption delivery latency to ${c.clients} WebSocket subscribers (CDF)`,
      subtitle: `loopback, one stream at 2 fps with ${c.tokensPerFrame} token events per frame; ${c.windows} × ${c.windowS} s per variant`,
      xLabel: 'emit → client receive (ms)',
      yLabel: 'fraction of deliveries',
      yMin: 0,
      yMax: 1,
      xMin: 0,
      series: variants.map((v, i) => ({
        name: `${v.name}: p99 ${pooled[i]?.captionMs?.p99 ?? '?'} ms`,
        color: i ? COLORS.third : COLORS.casa,
        points: histogramCdf(v.histogramCaption as { binMs: number; counts: number[] }),
      })),
      legend: 'bottom-right',
    }),
  };
}

function b6(r: PlotInput): Record<string, string> {
  const c = r.config as Any;
  const res = r.results as Any;
  const samples = (r.samples.samples as Any[]) ?? [];
  const mins = (s: Any): number => s.streamSeconds / 60;
  const ref = (res.rssAtWarmupEndMiB as number) ?? NaN;
  return {
    'b6-soak-rss.svg': lineChart({
      title: `B6: process memory over ${res.streamHours} h of stream`,
      subtitle: `${res.speedVsRealTime}× faster than real time; dashed: ±5% of RSS at the end of warm-up (${res.warmup ? `${res.warmup.frames} frames, ${res.warmup.wallSeconds} s of wall time` : `first ${c.warmupFraction * 100}%`})`,
      xLabel: 'stream time (minutes)',
      yLabel: 'MiB',
      yMin: 0,
      series: [
        { name: 'RSS', color: COLORS.casa, points: samples.map((s) => [mins(s), s.rssBytes / 2 ** 20]) },
        { name: 'V8 heap used', color: COLORS.third, points: samples.map((s) => [mins(s), s.heapUsedBytes / 2 ** 20]) },
        { name: 'external (buffers, onnxruntime tensors)', color: COLORS.fourth, points: samples.map((s) => [mins(s), s.externalBytes / 2 ** 20]) },
      ],
      refLines: Number.isFinite(ref)
        ? [
            { y: ref * 1.05, label: '+5%', color: COLORS.grey },
            { y: ref * 0.95, label: '−5%', color: COLORS.grey },
          ]
        : [],
      legend: 'middle-right',
    }),
    'b6-soak-kv.svg': lineChart({
      title: 'B6: self-attention KV entries over the stream',
      subtitle: `cap ${res.cap} tokens (the bundle's maxContextTokens); sampled every ${c.sampleEvery} frames`,
      xLabel: 'stream time (minutes)',
      yLabel: 'KV tokens',
      yMin: 0,
      series: [{ name: 'KV tokens (text only)', color: COLORS.casa, points: samples.map((s) => [mins(s), s.kvTokens]) }],
      refLines: [{ y: res.cap as number, label: `cap ${res.cap}` }],
      legend: 'bottom-right',
    }),
  };
}

function b8(r: PlotInput): Record<string, string> {
  const c = r.config as Any;
  const fo = (r.results.failover as Any) ?? {};
  const kills = (r.samples.failovers as Any[]) ?? [];
  const hists = (r.samples.fanoutHistograms as Any[]) ?? [];
  const nodes = ((r.results.fanout as Any)?.nodes as Any[]) ?? [];
  return {
    'b8-failover.svg': lineChart({
      title: `B8: failover time over ${c.kills} kills -9`,
      subtitle: `${c.nodes} nodes, ${c.streams} streams, leaseMs ${c.leaseMs}; one point per stream of the killed node: kill → its first event from another node`,
      xLabel: 'kill',
      yLabel: 'seconds',
      yMin: 0,
      xMin: 0,
      xMax: (c.kills as number) + 1,
      series: [{ name: 'stream resumed', color: COLORS.casa, line: false, markers: true, points: kills.filter((k) => k.ms !== null).map((k) => [k.kill, k.ms / 1000]) }],
      refLines: [
        { y: (fo.targetMs as number) / 1000, label: 'target: leaseMs + 5 s' },
        { y: (c.leaseMs as number) / 1000, label: 'leaseMs', color: COLORS.grey },
      ],
      legend: 'bottom-right',
    }),
    'b8-fanout-cdf.svg': lineChart({
      title: `B8: caption delivery latency, ${c.viewers} viewers over ${c.viewerNodes} nodes (CDF)`,
      subtitle: `one stream at 2 fps with ${c.tokensPerFrame} token events per frame, through Redis; ${c.windows} × ${c.windowS} s`,
      xLabel: 'emit → viewer receive (ms)',
      yLabel: 'fraction of deliveries',
      yMin: 0,
      yMax: 1,
      xMin: 0,
      series: hists.map((h, i) => ({
        name: `viewers on ${h.id}${h.owner ? ' (owner)' : ''}: p99 ${nodes[i]?.captionMs?.p99 ?? '?'} ms`,
        color: h.owner ? COLORS.casa : COLORS.third,
        points: histogramCdf(h.caption as { binMs: number; counts: number[] }),
      })),
      legend: 'bottom-right',
    }),
  };
}

const PLOTS: Record<SuiteId, (r: PlotInput) => Record<string, string>> = { b1, b2, b3, b4, b5, b6, b7: b7Plots, b8, worker: () => ({}) };

/** File name → SVG for a suite's result (none for a skipped suite). */
export function plotsFor(r: PlotInput & { skipped?: string }): Record<string, string> {
  if (r.skipped) return {};
  return PLOTS[r.suite](r);
}

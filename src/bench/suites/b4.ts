/**
 * B4 — latency: frame arrival → first token, and → caption committed, p50/p95/p99, with one
 * stream and at capacity (B3's confirmation runs of this invocation, or new runs at the
 * capacity recorded in b3-capacity.json).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { SUITE_FILES, TOKENS_PER_FRAME, type SuiteOutput, type SuiteResult, type Target } from '../common.js';
import type { SuiteContext } from '../context.js';
import { median, quantiles, round, type Quantiles } from '../stats.js';
import { COLORS, lineChart } from '../svg.js';
import { b3Params, benchClip, runTrial, type Trial } from './b3.js';

export interface B4Params {
  singleRepeats: number;
  measureS: number;
  warmupS: number;
  graceS: number;
}

export function b4Params(quick: boolean): B4Params {
  return quick ? { singleRepeats: 1, measureS: 5, warmupS: 3, graceS: 1 } : { singleRepeats: 3, measureS: 30, warmupS: 5, graceS: 1.5 };
}

function pooled(trials: readonly Trial[]): { captionMs: Quantiles; firstTokenMs: Quantiles; caption: number[]; first: number[] } {
  const caption = trials.flatMap((t) => t.samples?.captionMs ?? []);
  const first = trials.flatMap((t) => t.samples?.firstTokenMs ?? []);
  return { captionMs: quantiles(caption), firstTokenMs: quantiles(first), caption, first };
}

function cdf(xs: readonly number[]): Array<[number, number]> {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (!n) return [];
  const step = Math.max(1, Math.floor(n / 300));
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i += step) out.push([Math.max(1, s[i] as number), (i + 1) / n]);
  out.push([Math.max(1, s[n - 1] as number), 1]);
  return out;
}

export async function runB4(ctx: SuiteContext, params: B4Params = b4Params(ctx.opts.quick), b3p = b3Params(ctx.opts.quick)): Promise<SuiteOutput> {
  const clip = await benchClip(ctx, b3p);
  const single: Trial[] = [];
  for (let r = 0; r < params.singleRepeats; r++) single.push(await runTrial(ctx, clip, 1, params, 'single', 'B4'));
  // At capacity: B3's passing confirmation runs at its capacity — from this invocation, else
  // from b3-capacity.json (raw samples included) — else new runs at the recorded capacity.
  let atCap: Trial[] = [];
  let capSource = '';
  const file = path.join(ctx.opts.outDir, `${SUITE_FILES.b3}.json`);
  const b3 = ctx.earlier.b3 ?? (existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as SuiteResult) : undefined);
  if (b3 && !b3.skipped) {
    const cap = Number((b3.results as { capacity?: number }).capacity ?? 0);
    atCap = ((b3.samples.trials as Trial[] | undefined) ?? []).filter((t) => t.phase === 'confirm' && t.pass && t.streams === cap && t.samples);
    if (atCap.length) {
      capSource = ctx.earlier.b3
        ? `the B3 confirmation runs at the capacity (${cap} streams) of this invocation`
        : `the B3 confirmation runs at the capacity (${cap} streams) recorded in ${path.relative(process.cwd(), file)} (${b3.finishedAt})`;
    } else if (cap > 0) {
      for (let r = 0; r < b3p.confirmRepeats; r++) atCap.push(await runTrial(ctx, clip, cap, { measureS: b3p.confirmMeasureS, warmupS: b3p.warmupS, graceS: b3p.graceS }, 'confirm', 'B4'));
      capSource = `new runs at the capacity recorded in ${path.relative(process.cwd(), file)} (${cap} streams)`;
    }
  }
  const capStreams = atCap[0]?.streams ?? 0;
  const one = pooled(single);
  const cap = pooled(atCap);
  const perRunP99 = single.map((t) => t.captionMs.p99);
  const p99One = one.captionMs.p99;
  const met = p99One <= 100;
  const targets: Target[] = [
    {
      name: 'p99 frame arrival → caption committed, one stream',
      target: '≤ 100 ms',
      value: p99One,
      unit: 'ms',
      met,
      ...(met ? {} : { note: `One frame costs the engine ${round(median(single.map((t) => t.engineLatencyMs.p50)), 1)} ms at p50; the tail comes from the machine being shared (ffmpeg, other processes).` }),
    },
    {
      name: 'p99 frame arrival → first token, one stream',
      target: '(reported)',
      value: one.firstTokenMs.p99,
      unit: 'ms',
      met: null,
    },
  ];
  return {
    config: {
      ...params,
      tokensPerFrame: TOKENS_PER_FRAME,
      tokenGranularity: "'piece' (every sampled token is an event as soon as it completes a character); the default 'word' releases a word when the next one starts, one decode step later",
      atCapacitySource: capSource || 'none (no B3 result: run B3 first)',
      input: { clip: clip.path, codec: clip.codec, size: `${clip.width}x${clip.height}`, fps: clip.fps },
    },
    results: {
      oneStream: { firstTokenMs: one.firstTokenMs, captionMs: one.captionMs, perRunCaptionP99Ms: perRunP99, engineLatencyMs: single.map((t) => t.engineLatencyMs) },
      atCapacity: atCap.length ? { streams: capStreams, firstTokenMs: cap.firstTokenMs, captionMs: cap.captionMs, runs: atCap.length } : null,
    },
    targets,
    notes: [
      'Arrival = the moment the ingest source hands the decoded frame over (Frame.receivedAt); first token and caption = when the pipeline\'s consumer receives the event. Percentiles pool every frame of the measured windows of all runs.',
      "Token events at 'piece' granularity, so first token = the first sampled token. With the default 'word' granularity a word's event waits for the next word to start (one more decode step).",
    ],
    samples: {
      oneStream: single.map((t) => ({ captionMs: t.samples?.captionMs ?? [], firstTokenMs: t.samples?.firstTokenMs ?? [], dropped: t.dropped, nodeCpuPercent: t.nodeCpuPercent })),
      atCapacity: atCap.map((t) => ({ streams: t.streams, captionMs: t.samples?.captionMs ?? [], firstTokenMs: t.samples?.firstTokenMs ?? [] })),
    },
  };
}

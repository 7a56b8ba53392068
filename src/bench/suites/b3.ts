/**
 * B3 — capacity: the most concurrent real-time 2-fps streams this machine sustains with
 * p99 frame→caption latency ≤ 500 ms and no dropped frames. Each trial runs N real caption
 * pipelines (one ffmpeg child reading a clip at native speed, `realtime: true`, and one
 * caption session each, on one shared model) in a fresh process.
 */
import os from 'node:os';
import { bundleInfo, inWorker, TOKENS_PER_FRAME, type SuiteOutput, type Target } from '../common.js';
import type { SuiteContext } from '../context.js';
import type { Clip } from '../inputs.js';
import { round } from '../stats.js';
import { COLORS, lineChart } from '../svg.js';
import type { PipelinesResult, PipelinesTask } from '../tasks.js';

export const LATENCY_BUDGET_MS = 500;

export interface B3Params {
  warmupS: number;
  searchMeasureS: number;
  confirmMeasureS: number;
  confirmRepeats: number;
  maxStreams: number;
  /** Seconds waited after a window for the captions of its last frames. */
  graceS: number;
  clip: { seconds: number; width: number; height: number; fps: number };
}

export function b3Params(quick: boolean): B3Params {
  return quick
    ? { warmupS: 3, searchMeasureS: 5, confirmMeasureS: 5, confirmRepeats: 1, maxStreams: 4, graceS: 1, clip: { seconds: 40, width: 256, height: 256, fps: 10 } }
    : { warmupS: 6, searchMeasureS: 20, confirmMeasureS: 40, confirmRepeats: 2, maxStreams: 256, graceS: 1.5, clip: { seconds: 80, width: 256, height: 256, fps: 10 } };
}

export type Trial = Omit<PipelinesResult, 'samples'> & { phase: 'search' | 'confirm' | 'single'; samples?: PipelinesResult['samples'] };

export function pipelinesTask(ctx: SuiteContext, clip: Clip, streams: number, measureS: number, warmupS: number, graceS: number): PipelinesTask {
  return {
    kind: 'pipelines',
    bundle: ctx.opts.casa,
    clip: clip.path,
    streams,
    staggerMs: 500,
    warmupS,
    measureS,
    tokens: TOKENS_PER_FRAME,
    latencyBudgetMs: LATENCY_BUDGET_MS,
    graceS,
    fps: 2,
  };
}

export async function runTrial(
  ctx: SuiteContext,
  clip: Clip,
  streams: number,
  o: { measureS: number; warmupS: number; graceS: number },
  phase: Trial['phase'],
  suite = 'B3',
): Promise<Trial> {
  const { measureS, warmupS } = o;
  ctx.log(`${suite} trial (${phase}): ${streams} stream${streams === 1 ? '' : 's'}, ${warmupS} s warm-up + ${measureS} s measured`);
  const r = await inWorker<PipelinesResult>(ctx.log, `${streams} streams`, pipelinesTask(ctx, clip, streams, measureS, warmupS, o.graceS));
  ctx.log(
    `  → ${r.pass ? 'pass' : 'FAIL'}: p99 caption ${r.captionMs.p99} ms, first token p99 ${r.firstTokenMs.p99} ms, dropped ${r.dropped}, node CPU ${r.nodeCpuPercent}%, machine CPU ${r.machineCpuPercent ?? '?'}%${r.reasons.length ? ` (${r.reasons.join('; ')})` : ''}`,
  );
  return { ...r, phase };
}

export function benchClip(ctx: SuiteContext, p: B3Params): Promise<Clip> {
  return ctx.clip({ ...p.clip, name: 'realtime-clip' });
}

export async function runB3(ctx: SuiteContext, params: B3Params = b3Params(ctx.opts.quick)): Promise<SuiteOutput> {
  const clip = await benchClip(ctx, params);
  const trials: Trial[] = [];
  const trial = async (n: number, phase: 'search' | 'confirm'): Promise<Trial> => {
    const t = await runTrial(ctx, clip, n, { measureS: phase === 'search' ? params.searchMeasureS : params.confirmMeasureS, warmupS: params.warmupS, graceS: params.graceS }, phase);
    // Raw samples are kept for the confirmation runs (B4 uses them); search trials keep their quantiles.
    if (phase === 'search') delete t.samples;
    trials.push(t);
    return t;
  };
  const { capacity: confirmed, confirm } = await confirmCapacity(await searchCapacity(trial, params.maxStreams), params.confirmRepeats, trial);
  const failAbove = trials.filter((t) => !t.pass).sort((a, b) => a.streams - b.streams)[0];
  const lowerBound = !failAbove;
  return {
    config: {
      ...params,
      tokensPerFrame: TOKENS_PER_FRAME,
      latencyBudgetMs: LATENCY_BUDGET_MS,
      input: { clip: clip.path, codec: clip.codec, size: `${clip.width}x${clip.height}`, fps: clip.fps, seconds: clip.seconds, command: clip.command },
      pipeline: 'createCaptionPipeline({ input: clip, realtime: true, fps: 2, generation: { …5 tokens, tokenGranularity: piece } }) per stream (ffmpeg -re, newest frame wins), one shared model, intraOpNumThreads 1',
      stagger: 'pipelines started evenly over 500 ms (one frame period), so frames of different streams do not all arrive at the same instant',
      search: 'doubling from 1 stream until a trial fails, then bisection to within 8%, then confirmation runs at the capacity (stepping down on failure)',
      bundle: bundleInfo(ctx.opts.casa),
    },
    results: {
      capacity: confirmed,
      capacityIsLowerBound: lowerBound,
      firstFailure: failAbove ? { streams: failAbove.streams, reasons: failAbove.reasons } : null,
      atCapacity: confirm.map((t) => ({ streams: t.streams, pass: t.pass, captionMs: t.captionMs, firstTokenMs: t.firstTokenMs, dropped: t.dropped, nodeCpuPercent: t.nodeCpuPercent, machineCpuPercent: t.machineCpuPercent })),
      trials: trials.map(trialRow),
    },
    targets: [capacityTarget(confirmed, failAbove, params.maxStreams)],
    notes: [
      `Workload per stream: a ${clip.width}x${clip.height} ${clip.codec} clip at ${clip.fps} fps made from the synthetic world frames, decoded by its own ffmpeg child at native speed and sampled at 2 fps; the engine generates exactly ${TOKENS_PER_FRAME} tokens per frame.`,
      'Token events at piece granularity (each sampled token as soon as it completes a character), so the first token event is the first sampled token. Latency = frame arrival (the ingest source hands the frame over) → the caption event reaching the pipeline\'s consumer. Only frames that arrived inside the measured window count; warm-up (ffmpeg and model start) is excluded. A trial fails on any dropped frame, a p99 over 500 ms, a frame without caption, or ingest falling behind real time.',
      'Real camera streams (e.g. 1080p H.264 at 30 fps) cost far more ffmpeg decode CPU per stream than this small clip; capacity with such inputs is lower, bounded by decoding.',
    ],
    samples: { trials },
  };
}

type TrialRunner = (n: number, phase: 'search' | 'confirm') => Promise<Trial>;

/** The most streams that passed: doubling from 1 until a trial fails, then bisection to within 8%. */
async function searchCapacity(trial: TrialRunner, maxStreams: number): Promise<number> {
  let lo = 0;
  let hi = Infinity;
  for (let n = 1; n <= maxStreams; n *= 2) {
    const t = await trial(n, 'search');
    if (t.pass) lo = n;
    else {
      hi = n;
      break;
    }
  }
  while (Number.isFinite(hi) && hi - lo > Math.max(1, Math.round(lo * 0.08))) {
    const mid = Math.floor((lo + hi) / 2);
    const t = await trial(mid, 'search');
    if (t.pass) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** Confirms with longer, repeated runs, stepping down when a confirmation fails (0: none held). */
async function confirmCapacity(found: number, repeats: number, trial: TrialRunner): Promise<{ capacity: number; confirm: Trial[] }> {
  let capacity = found;
  const confirm: Trial[] = [];
  for (let attempt = 0; capacity > 0 && attempt < 3; attempt++) {
    confirm.length = 0;
    let ok = true;
    for (let r = 0; r < repeats; r++) {
      const t = await trial(capacity, 'confirm');
      confirm.push(t);
      if (!t.pass) {
        ok = false;
        break;
      }
    }
    if (ok) break;
    capacity = Math.max(0, capacity - Math.max(1, Math.round(capacity * 0.08)));
  }
  return { capacity: confirm.length > 0 && confirm.every((t) => t.pass) ? capacity : 0, confirm };
}

function capacityTarget(confirmed: number, failAbove: Trial | undefined, maxStreams: number): Target {
  const lowerBound = !failAbove;
  const met = confirmed >= 16 ? true : lowerBound ? null : false;
  return {
    name: 'concurrent real-time 2-fps streams (p99 frame→caption ≤ 500 ms, no drops)',
    target: '≥ 16',
    value: lowerBound ? `≥ ${confirmed} (search stopped at ${maxStreams})` : confirmed,
    unit: 'streams',
    met,
    ...(met !== false
      ? {}
      : {
          note:
            `${limitNote(failAbove, maxStreams)} What limits it: caption work of every stream is serialised on the one JavaScript thread, so capacity ≈ 1 / (per-frame engine time × 2 fps) less ingest. ` +
            'What would lift it: running sessions in worker threads or several daemon processes (one per core), batching the frames of several streams into one graph run, fewer graph runs per frame.',
        }),
  };
}

/** What the first failing trial measured. */
function limitNote(f: Trial | undefined, maxStreams: number): string {
  if (!f) return `no failure up to ${maxStreams} streams`;
  const cpu = f.machineCpuPercent;
  return (
    `At ${f.streams} streams: ${f.reasons.join('; ')}; the Node process (all caption sessions share one JavaScript thread: onnxruntime runs each graph synchronously on it) used ${f.nodeCpuPercent}% of a core, ` +
    `the whole machine ${cpu ?? '?'}% of its ${os.cpus().length} cores (the other share is the ${f.ffmpegChildren} ffmpeg children), event-loop delay p99 ${f.eventLoopDelayP99Ms} ms.`
  );
}

function trialRow(t: Trial): Record<string, unknown> {
  return {
    phase: t.phase,
    streams: t.streams,
    pass: t.pass,
    reasons: t.reasons,
    p99CaptionMs: t.captionMs.p99,
    p50CaptionMs: t.captionMs.p50,
    dropped: t.dropped,
    nodeCpuPercent: t.nodeCpuPercent,
    machineCpuPercent: t.machineCpuPercent,
    eventLoopDelayP99Ms: t.eventLoopDelayP99Ms,
  };
}

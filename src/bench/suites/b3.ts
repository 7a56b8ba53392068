/**
 * B3 — capacity: the most concurrent real-time 2-fps streams this machine sustains with
 * p99 frame→caption latency ≤ 500 ms and no dropped frames. Each trial runs N real caption
 * pipelines (one ffmpeg child reading a live stream, and one caption session each, on one
 * shared model) in a fresh process. The streams are live HTTP MPEG-TS streams from the
 * bench's live server (b3-ingest.ts), each delivered at its own pace as a camera would.
 * In the same run: the decode CPU per stream for several inputs and decode options, the
 * ingest-only ceiling (the same ffmpeg children, no model), and the event-loop delay at
 * capacity with the engine on the main thread instead of in worker threads.
 */
import os from 'node:os';
import { bundleInfo, inWorker, TOKENS_PER_FRAME, type SuiteOutput, type Target } from '../common.js';
import type { SuiteContext } from '../context.js';
import type { Clip } from '../inputs.js';
import { round } from '../stats.js';
import { COLORS, lineChart } from '../svg.js';
import type { IngestTrialResult, PipelinesResult, PipelinesTask } from '../tasks.js';
import type { LoadOptions } from '../../model/bundle.js';
import type { DecodeOptions } from '../../ingest/index.js';
import { decodeCpuTable, ingestTask, startLive, type DecodeParams, type DecodeRow, type LiveServer } from './b3-ingest.js';

export const LATENCY_BUDGET_MS = 500;

export interface B3Params {
  warmupS: number;
  searchMeasureS: number;
  confirmMeasureS: number;
  confirmRepeats: number;
  /** The search doubles from this many streams (bisecting below it when it fails). */
  fromStreams: number;
  maxStreams: number;
  /** Seconds waited after a window for the captions of its last frames. */
  graceS: number;
  /** The file clip (B4's single-stream input, and the file row of the decode table). */
  clip: { seconds: number; width: number; height: number; fps: number };
  /** Length of the live clip (longer than any trial: a stream ends with it). */
  liveSeconds: number;
  /** ffmpeg decode options of every capacity and ceiling trial. */
  decodeOptions: DecodeOptions;
  /** The decode CPU table (0 streams: not measured). */
  decode: DecodeParams;
  /** The ingest-only ceiling search. */
  ingest: { fromStreams: number; maxStreams: number; warmupS: number; measureS: number };
  /** The engine before batching, at the capacity found: its event-loop delay (null: not run). */
  mainThreadEngine: LoadOptions | null;
}

const DECODE_INPUTS = [
  { name: '256x256 10 fps (the B3 clip)', width: 256, height: 256, fps: 10, noise: 0 },
  { name: '720p25', width: 1280, height: 720, fps: 25, noise: 6 },
  { name: '1080p30', width: 1920, height: 1080, fps: 30, noise: 6 },
];

const DECODE_VARIANTS: Record<string, DecodeOptions | null> = {
  'ffmpeg defaults': null,
  'threads 1': { threads: 1 },
  'threads 1, skip_loop_filter': { threads: 1, skipLoopFilter: true },
  'threads 1, skip_frame noref': { threads: 1, skipFrame: 'noref' },
  'threads 1, skip_frame nokey': { threads: 1, skipFrame: 'nokey' },
};

export function b3Params(quick: boolean): B3Params {
  return quick
    ? {
        warmupS: 3, searchMeasureS: 5, confirmMeasureS: 5, confirmRepeats: 1, fromStreams: 2, maxStreams: 4, graceS: 1,
        clip: { seconds: 40, width: 256, height: 256, fps: 10 }, liveSeconds: 60, decodeOptions: { threads: 1, nice: 10 },
        decode: { streams: 2, warmupS: 1, measureS: 2, clipSeconds: 20, inputs: DECODE_INPUTS.slice(0, 1), variants: { 'ffmpeg defaults': null, 'threads 1': { threads: 1 } }, comparePts: 10 },
        ingest: { fromStreams: 2, maxStreams: 4, warmupS: 2, measureS: 3 },
        mainThreadEngine: { batch: false },
      }
    : {
        warmupS: 6, searchMeasureS: 20, confirmMeasureS: 40, confirmRepeats: 2, fromStreams: 32, maxStreams: 512, graceS: 1.5,
        clip: { seconds: 80, width: 256, height: 256, fps: 10 }, liveSeconds: 240, decodeOptions: { threads: 1, skipLoopFilter: true, nice: 10 },
        decode: { streams: 8, warmupS: 3, measureS: 12, clipSeconds: 60, inputs: DECODE_INPUTS, variants: DECODE_VARIANTS, comparePts: 40 },
        ingest: { fromStreams: 64, maxStreams: 640, warmupS: 5, measureS: 15 },
        mainThreadEngine: { batch: false },
      };
}

export type Trial = Omit<PipelinesResult, 'samples'> & { phase: 'search' | 'confirm' | 'single' | 'main-thread'; samples?: PipelinesResult['samples'] };

/** What a trial's pipelines read: a clip file (at native speed), or the live server's streams. */
export type TrialInput = Clip | { live: string; decode?: DecodeOptions };

/** A trial run by another build's bench worker (src/bench/other-build.ts) on its own bundle. */
export interface TrialBuild {
  label: string;
  workerScript: string;
  bundle: string;
}

export function pipelinesTask(ctx: SuiteContext, input: TrialInput, streams: number, measureS: number, warmupS: number, graceS: number, load?: LoadOptions): PipelinesTask {
  return {
    kind: 'pipelines',
    bundle: ctx.opts.casa,
    ...('live' in input ? { clip: input.live, realtime: false, ...(input.decode ? { decode: input.decode } : {}) } : { clip: input.path }),
    ...(load ? { load } : {}),
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
  input: TrialInput,
  streams: number,
  o: { measureS: number; warmupS: number; graceS: number; load?: LoadOptions; build?: TrialBuild },
  phase: Trial['phase'],
  suite = 'B3',
): Promise<Trial> {
  const { measureS, warmupS } = o;
  ctx.log(`${suite} trial (${phase}): ${streams} stream${streams === 1 ? '' : 's'}, ${warmupS} s warm-up + ${measureS} s measured${o.build ? ` (${o.build.label})` : ''}`);
  const task = pipelinesTask(ctx, input, streams, measureS, warmupS, o.graceS, o.load);
  const r = await inWorker<PipelinesResult>(ctx.log, `${streams} streams`, o.build ? { ...task, bundle: o.build.bundle } : task, o.build?.workerScript);
  ctx.log(
    `  → ${r.pass ? 'pass' : 'FAIL'}: p99 caption ${r.captionMs.p99} ms, first token p99 ${r.firstTokenMs.p99} ms, dropped ${r.dropped}, node CPU ${r.nodeCpuPercent}%, machine CPU ${r.machineCpuPercent ?? '?'}%${r.reasons.length ? ` (${r.reasons.join('; ')})` : ''}`,
  );
  return { ...r, phase };
}

export function benchClip(ctx: SuiteContext, p: B3Params): Promise<Clip> {
  return ctx.clip({ ...p.clip, name: 'realtime-clip' });
}

export async function runB3(ctx: SuiteContext, params: B3Params = b3Params(ctx.opts.quick)): Promise<SuiteOutput> {
  const fileClip = await benchClip(ctx, params);
  const decode = params.decode.streams > 0 ? await decodeCpuTable(ctx, params.decode, fileClip) : [];
  const liveClip = await ctx.clip({ ...params.clip, seconds: params.liveSeconds, name: 'live-clip', format: 'ts' });
  const live = await startLive(ctx, liveClip, 'B3 live server');
  try {
    const ingest = await ingestCeiling(ctx, live, params);
    const c = await capacityTrials(ctx, { live: live.url, decode: params.decodeOptions }, params);
    const mainThread = await mainThreadTrial(ctx, { live: live.url, decode: params.decodeOptions }, c.capacity, params);
    const server = await live.stop();
    return b3Output(ctx, params, { fileClip, liveClip, decode, ingest, ...c, mainThread, server });
  } catch (err) {
    await live.stop().catch(() => undefined);
    throw err;
  }
}

/** Capacity: the search, then confirmation runs (raw samples kept for those: B4 uses them). */
async function capacityTrials(ctx: SuiteContext, input: TrialInput, params: B3Params) {
  const trials: Trial[] = [];
  const trial = async (n: number, phase: 'search' | 'confirm'): Promise<Trial> => {
    const t = await runTrial(ctx, input, n, { measureS: phase === 'search' ? params.searchMeasureS : params.confirmMeasureS, warmupS: params.warmupS, graceS: params.graceS }, phase);
    if (phase === 'search') delete t.samples;
    trials.push(t);
    return t;
  };
  const { capacity, confirm } = await confirmCapacity(await searchCapacity(trial, params.fromStreams, params.maxStreams), params.confirmRepeats, trial);
  return { capacity, confirm, trials };
}

export type IngestTrial = IngestTrialResult & { phase: 'ingest' };

/** The ingest-only ceiling: the same search over frame sources with no model behind them. */
async function ingestCeiling(ctx: SuiteContext, live: LiveServer, params: B3Params): Promise<{ ceiling: number; trials: IngestTrial[] }> {
  const trials: IngestTrial[] = [];
  const p = params.ingest;
  const trial = async (n: number): Promise<IngestTrial> => {
    ctx.log(`B3 ingest-only trial: ${n} streams, ${p.warmupS} s warm-up + ${p.measureS} s measured`);
    const r = await inWorker<IngestTrialResult>(ctx.log, `ingest ${n}`, ingestTask(live.url, false, n, { ...p, decode: params.decodeOptions }));
    ctx.log(`  → ${r.pass ? 'pass' : 'FAIL'}: ffmpeg ${r.ffmpegCpuPercent}% of a core (${r.ffmpegCpuPercentPerStream}% per stream), machine ${r.machineCpuPercent ?? '?'}%${r.reasons.length ? ` (${r.reasons.join('; ')})` : ''}`);
    const t: IngestTrial = { ...r, phase: 'ingest', sampledPts: [] };
    trials.push(t);
    return t;
  };
  const ceiling = await searchCapacity(trial, p.fromStreams, p.maxStreams);
  return { ceiling, trials };
}

/** At the capacity found, the engine on the main thread (one stream per graph run, as before batching). */
async function mainThreadTrial(ctx: SuiteContext, input: TrialInput, capacity: number, params: B3Params): Promise<Trial | null> {
  if (!params.mainThreadEngine || capacity <= 0) return null;
  const t = await runTrial(ctx, input, capacity, { measureS: params.searchMeasureS, warmupS: params.warmupS, graceS: params.graceS, load: params.mainThreadEngine }, 'main-thread');
  delete t.samples;
  return t;
}

interface B3Runs {
  fileClip: Clip;
  liveClip: Clip;
  decode: DecodeRow[];
  ingest: { ceiling: number; trials: IngestTrial[] };
  capacity: number;
  confirm: Trial[];
  trials: Trial[];
  mainThread: Trial | null;
  server: { served: number; cpuMicros: number };
}

function b3Output(ctx: SuiteContext, params: B3Params, r: B3Runs): SuiteOutput {
  const { liveClip: clip, capacity: confirmed, confirm, trials } = r;
  const failAbove = trials.filter((t) => !t.pass).sort((a, b) => a.streams - b.streams)[0];
  const lowerBound = !failAbove;
  const batchedEld = confirm.filter((t) => t.pass).map((t) => t.eventLoopDelayP99Ms);
  return {
    config: {
      ...params,
      tokensPerFrame: TOKENS_PER_FRAME,
      latencyBudgetMs: LATENCY_BUDGET_MS,
      input: { clip: clip.path, codec: clip.codec, size: `${clip.width}x${clip.height}`, fps: clip.fps, seconds: clip.seconds, command: clip.command, delivery: 'live HTTP MPEG-TS from the bench live server (src/bench/live-server.ts), one connection per stream, each from the clip\'s start at its own pace' },
      fileInput: { clip: r.fileClip.path, command: r.fileClip.command },
      pipeline: 'createCaptionPipeline({ input: http://127.0.0.1:PORT/live/i.ts, fps: 2, source: { decode }, generation: { …5 tokens, tokenGranularity: piece } }) per stream (a live input: ffmpeg reads the socket, newest frame wins), one shared model (the engine\'s defaults: batched, one inference worker per core), intraOpNumThreads 1',
      stagger: 'pipelines started evenly over 500 ms (one frame period), so frames of different streams do not all arrive at the same instant',
      search: `doubling from ${params.fromStreams} streams until a trial fails (bisecting below when the first fails), then bisection to within 8%, then confirmation runs at the capacity (stepping down on failure)`,
      bundle: bundleInfo(ctx.opts.casa),
    },
    results: {
      capacity: confirmed,
      capacityIsLowerBound: lowerBound,
      firstFailure: failAbove ? { streams: failAbove.streams, reasons: failAbove.reasons } : null,
      atCapacity: confirm.map((t) => ({ streams: t.streams, pass: t.pass, captionMs: t.captionMs, firstTokenMs: t.firstTokenMs, dropped: t.dropped, nodeCpuPercent: t.nodeCpuPercent, machineCpuPercent: t.machineCpuPercent, eventLoopDelayP99Ms: t.eventLoopDelayP99Ms })),
      ingestCeiling: r.ingest.ceiling,
      capacityShareOfIngestCeiling: r.ingest.ceiling > 0 ? round(confirmed / r.ingest.ceiling, 3) : null,
      eventLoopDelayP99AtCapacityMs: {
        batched: batchedEld.length ? Math.max(...batchedEld) : null,
        mainThread: r.mainThread ? r.mainThread.eventLoopDelayP99Ms : null,
        mainThreadTrial: r.mainThread ? trialRow(r.mainThread) : null,
      },
      decodeCpu: r.decode.map(({ trial: _t, ...row }) => row),
      liveServerCpuSeconds: round(r.server.cpuMicros / 1e6, 1),
      trials: trials.map(trialRow),
      ingestTrials: r.ingest.trials.map(ingestRow),
    },
    targets: [capacityTarget(confirmed, failAbove, params.maxStreams, r.ingest.ceiling)],
    notes: b3Notes(clip, params.decodeOptions),
    samples: { trials, ingestTrials: r.ingest.trials, decodeTrials: r.decode.map((d) => ({ input: d.input, delivery: d.delivery, variant: d.variant, ...d.trial })), ...(r.mainThread ? { mainThread: r.mainThread } : {}) },
  };
}

function b3Notes(clip: Clip, decode: DecodeOptions): string[] {
  return [
    `Workload per stream: a ${clip.width}x${clip.height} ${clip.codec} clip at ${clip.fps} fps made from the synthetic world frames, served live over HTTP (MPEG-TS, each video packet sent when its time comes, from the clip's start for every connection: the bench's live server, its own process), read by the stream's own ffmpeg child, sampled at 2 fps; the engine generates exactly ${TOKENS_PER_FRAME} tokens per frame.`,
    `Decoding: every capacity and ceiling trial runs its ffmpeg children with the decode options ${JSON.stringify(decode)} (docs/ingest.md, "Decoding CPU"): the decoders yield the cores to the model's runs. A frame's arrival is taken after its decoding, so a decoder's wait for a core is not in frame→caption; a decoder that does not keep up fails the trial as ingest falling behind real time. What the waits add shows in each trial's delivery delay (a frame's arrival less its pts, less the least of its stream: the delivery's own jitter plus any decoder wait) and live→caption (delivery delay + frame→caption).`,
    'Why a live server: a camera or relay delivers a live stream over the network, and ffmpeg waits on the socket between frames. Reading a file with -re instead (what B3 did before) makes every ffmpeg child poll its clock every 10 ms; the decode table measures that emulation next to the live delivery.',
    'Token events at piece granularity (each sampled token as soon as it completes a character), so the first token event is the first sampled token. Latency = frame arrival (the ingest source hands the frame over) → the caption event reaching the pipeline\'s consumer. Only frames that arrived inside the measured window count; warm-up (ffmpeg and model start) is excluded. A trial fails on any dropped frame, a p99 over 500 ms, a frame without caption, or ingest falling behind real time.',
    'Ingest-only ceiling: the same frame sources (one ffmpeg child per stream, the same decode options, the same live server) with nothing behind them, the same search; a trial fails on a dropped frame, on fewer frames than real time, or a p99 frame lateness (arrival against the stream\'s own clock, less its median) over 500 ms.',
    'Decode CPU per stream: the ffmpeg children\'s CPU time (/proc/PID/stat utime + stime) over the window ÷ children; "sampled frames changed" compares the first stream\'s sampled frame times with the default decoding\'s (the same clip from its start).',
    'Event-loop delay p99 (perf_hooks monitorEventLoopDelay, 10 ms resolution) of the trial process at the capacity: the batched engine (graph runs in inference worker threads) against the same streams with the engine on the main thread (batch: false, one stream per graph run, as before batching; that trial is expected to fail real time).',
  ];
}

function ingestRow(t: IngestTrialResult): Record<string, unknown> {
  return {
    streams: t.streams,
    pass: t.pass,
    reasons: t.reasons,
    framesArrived: t.framesArrived,
    framesExpected: t.framesExpected,
    latenessP99Ms: t.latenessP99Ms,
    ffmpegCpuPercent: t.ffmpegCpuPercent,
    ffmpegCpuPercentPerStream: t.ffmpegCpuPercentPerStream,
    nodeCpuPercent: t.nodeCpuPercent,
    machineCpuPercent: t.machineCpuPercent,
  };
}

export type TrialRunner = (n: number, phase: 'search' | 'confirm') => Promise<Trial>;

/** The most streams that passed: doubling from `from` until a trial fails, then bisection to within 8%. */
export async function searchCapacity(trial: (n: number, phase: 'search') => Promise<{ pass: boolean }>, from: number, maxStreams: number): Promise<number> {
  let lo = 0;
  let hi = Infinity;
  for (let n = from; n <= maxStreams; n *= 2) {
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

/** How many levels the confirmation tries, each 8 % below the one before (200 → 112 at the last). */
export const CONFIRM_LEVELS = 8;

/**
 * Confirms with longer, repeated runs, stepping down 8 % when a confirmation fails, until a
 * level holds every run or CONFIRM_LEVELS levels were tried (capacity 0: none held). The
 * confirmations are the runs that count: the search's short trials only find where to start.
 */
export async function confirmCapacity(found: number, repeats: number, trial: TrialRunner): Promise<{ capacity: number; confirm: Trial[] }> {
  let confirm: Trial[] = [];
  for (let level = 0, capacity = found; capacity > 0 && level < CONFIRM_LEVELS; level++) {
    confirm = [];
    for (let r = 0; r < repeats; r++) {
      const t = await trial(capacity, 'confirm');
      confirm.push(t);
      if (!t.pass) break;
    }
    if (confirm.every((t) => t.pass)) return { capacity, confirm };
    capacity -= Math.max(1, Math.round(capacity * 0.08));
  }
  return { capacity: 0, confirm };
}

export const CAPACITY_TARGET = 200;

function capacityTarget(confirmed: number, failAbove: Trial | undefined, maxStreams: number, ingestCeiling: number): Target {
  const lowerBound = !failAbove;
  const met = confirmed >= CAPACITY_TARGET ? true : lowerBound ? null : false;
  return {
    name: 'concurrent real-time 2-fps streams (p99 frame→caption ≤ 500 ms, no drops)',
    target: `≥ ${CAPACITY_TARGET}`,
    value: lowerBound ? `≥ ${confirmed} (search stopped at ${maxStreams})` : confirmed,
    unit: 'streams',
    met,
    ...(met !== false
      ? {}
      : {
          note:
            `${limitNote(failAbove, maxStreams)} The ingest alone (the same ffmpeg children, no model) sustains ${ingestCeiling} streams on this machine, so capacity is ${ingestCeiling > 0 ? Math.round((confirmed / ingestCeiling) * 100) : '?'}% of the ingest ceiling: the cores are shared between decoding (every ffmpeg child) and the model (the inference workers and the main thread's sampling and protocol). ` +
            'What would lift it: cheaper decoding (a hardware decoder, decode.hwaccel; skipping frames the sampling never uses, decode.skipFrame, where the stream\'s structure allows), fewer graph runs per frame, sampling in the inference workers.',
        }),
  };
}

/** What the first failing trial measured. */
function limitNote(f: Trial | undefined, maxStreams: number): string {
  if (!f) return `no failure up to ${maxStreams} streams.`;
  const cpu = f.machineCpuPercent;
  return (
    `At ${f.streams} streams: ${f.reasons.join('; ')}; the Node process (main thread and inference workers) used ${f.nodeCpuPercent}% of a core, ` +
    `the whole machine ${cpu ?? '?'}% of its ${os.cpus().length} cores (the rest is the ${f.ffmpegChildren} ffmpeg children and other processes), event-loop delay p99 ${f.eventLoopDelayP99Ms} ms.`
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
    p99DeliveryMs: t.deliveryMs.p99,
    p99LiveToCaptionMs: t.liveToCaptionMs.p99,
    dropped: t.dropped,
    nodeCpuPercent: t.nodeCpuPercent,
    machineCpuPercent: t.machineCpuPercent,
    eventLoopDelayP99Ms: t.eventLoopDelayP99Ms,
  };
}

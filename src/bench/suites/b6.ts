/**
 * B6 — soak: a long stream (≥ 2 h of stream time) through the real pipeline, as fast as the
 * engine goes (file input without `realtime`: ffmpeg is paced by the session, nothing is
 * dropped), with the bundle's context cap: RSS after warm-up, KV tokens against the cap, file
 * descriptors and child processes before, during and after, and after pipeline restarts.
 */
import { TOKENS_PER_FRAME, bundleInfo, inWorker, type SuiteOutput, type Target } from '../common.js';
import type { SuiteContext } from '../context.js';
import { linearFit, max, min, round } from '../stats.js';
import { COLORS, lineChart } from '../svg.js';
import type { SoakResult, SoakSample, SoakTask } from '../tasks.js';

export interface B6Params {
  streamSeconds: number;
  sampleEvery: number;
  restartCycles: number;
  /** Warm-up: at least this share of the frames … */
  warmupFraction: number;
  /**
   * … and at least this many seconds of wall time; then one full GC. V8 sizes its heaps
   * (young generation growth, promoted garbage filling the old generation until the first
   * full mark-compact, the memory reducer shrinking idle isolates) over the first tens of
   * seconds of wall time, whatever the stream time, and the soak runs ~100× faster than real
   * time (docs/benchmarks.md, B6).
   */
  warmupMinWallS: number;
  /** The reference sample comes at least this long after the GC: V8 hands the freed pages back to the OS from a background thread. */
  warmupSettleS: number;
}

export function b6Params(quick: boolean): B6Params {
  return quick
    ? { streamSeconds: 2400, sampleEvery: 50, restartCycles: 1, warmupFraction: 0.1, warmupMinWallS: 30, warmupSettleS: 2 }
    : { streamSeconds: 7200, sampleEvery: 100, restartCycles: 3, warmupFraction: 0.1, warmupMinWallS: 40, warmupSettleS: 2 };
}

export async function runB6(ctx: SuiteContext, params: B6Params = b6Params(ctx.opts.quick)): Promise<SuiteOutput> {
  const size = ctx.imageSize;
  const clip = await ctx.clip({ seconds: params.streamSeconds, width: size, height: size, fps: 2, name: 'soak-clip' });
  const task: SoakTask = {
    kind: 'soak',
    bundle: ctx.opts.casa,
    clip: clip.path,
    expectFrames: params.streamSeconds * 2,
    sampleEvery: params.sampleEvery,
    tokens: TOKENS_PER_FRAME,
    restartCycles: params.restartCycles,
    warmupFrames: Math.ceil(params.streamSeconds * 2 * params.warmupFraction),
    warmupMinWallS: params.warmupMinWallS,
  };
  ctx.log(`B6: soak, ${params.streamSeconds / 3600} h of stream (${params.streamSeconds * 2} frames) as fast as possible`);
  const r = await inWorker<SoakResult>(ctx.log, 'B6', task);
  const m = rssFigures(r, params);
  const leaks = leakFigures(r);
  return {
    config: {
      ...params,
      tokensPerFrame: TOKENS_PER_FRAME,
      input: { clip: clip.path, codec: clip.codec, size: `${clip.width}x${clip.height}`, fps: clip.fps, seconds: clip.seconds, command: clip.command },
      pipeline: 'createCaptionPipeline({ input: clip }) (file input, not realtime: the session paces ffmpeg, no frame is dropped), the bundle\'s context cap',
      bundle: bundleInfo(ctx.opts.casa),
    },
    results: b6Results(r, m, leaks),
    targets: b6Targets(r, m, leaks, ctx.opts.quick),
    notes: [
      `Warm-up: the first ${params.warmupFraction * 100}% of the frames and at least ${params.warmupMinWallS} s of wall time, ended by one full garbage collection of the main thread's heap (gc(), the worker runs with --expose-gc; none is forced afterwards); RSS is compared with the first sample ${params.warmupSettleS} s after it, once V8 has handed the freed pages back (here at ${m.warmFrames} frames, ${round(m.warmWallS, 1)} s). Why: V8 sizes its heaps over the first tens of seconds of wall time whatever the stream time — the young generation grows from 1 to 16 MiB semi-spaces, promoted per-frame garbage fills the old generation until the first full mark-compact (its limit is several times the live heap until then, set from the live size after it), the memory reducer shrinks isolates that allocate little (an idle inference worker) — and the soak runs ~${round(r.streamSeconds / Math.max(1e-9, r.wallSeconds), 0)}× faster than real time, so the first ${params.warmupFraction * 100}% of its frames take only seconds. A daemon at real time has been through this within its first minute. Measured from the end of the first ${params.warmupFraction * 100}% of the frames instead (the rule before, ${m.fractionOnly.warmFrames} frames, ${round(m.fractionOnly.warmWallS, 1)} s) the RSS ratio range of this run would be ×${round(m.fractionOnly.loRatio, 3)} … ×${round(m.fractionOnly.hiRatio, 3)}.`,
      'File descriptors and child processes are counted from /proc for the worker process: before the pipeline starts (model loaded), every sample during the stream (one ffmpeg child expected), after it stopped, and after each of the short restart cycles (a new pipeline of 20 frames on the same model).',
    ],
    samples: { samples: r.samples, restarts: r.restarts },
  };
}

/** The regular samples from `from` on, RSS against the first of them. */
function rssWindow(r: SoakResult, from: (s: SoakSample) => boolean) {
  const after = r.samples.filter((s) => !s.warmupEnd && from(s));
  const ref = after[0]?.rssBytes ?? NaN;
  const rssMax = max(after.map((s) => s.rssBytes));
  const rssMin = min(after.map((s) => s.rssBytes));
  return { after, warmFrames: after[0]?.frame ?? r.frames, warmWallS: after[0]?.wallSeconds ?? r.wallSeconds, ref, rssMax, rssMin, hiRatio: rssMax / ref, loRatio: rssMin / ref };
}

/** RSS and heap after warm-up, against the first sample after it. */
function rssFigures(r: SoakResult, p: Pick<B6Params, 'warmupFraction' | 'warmupMinWallS' | 'warmupSettleS'>) {
  const minFrames = Math.ceil(r.frames * p.warmupFraction);
  // The warm-up ended with a full GC (the sample flagged warmupEnd); without one, by the frame and wall-time rule alone.
  const end = r.samples.find((s) => s.warmupEnd);
  const w = rssWindow(r, end ? (s) => s.wallSeconds >= end.wallSeconds + p.warmupSettleS : (s) => s.frame >= minFrames && s.wallSeconds >= p.warmupMinWallS);
  const fractionOnly = rssWindow(r, (s) => s.frame >= minFrames);
  const after = w.after;
  const secondHalf = r.samples.filter((s) => s.frame > r.frames / 2);
  return {
    ...w,
    fractionOnly,
    slope: linearFit(
      after.map((s) => s.streamSeconds / 3600),
      after.map((s) => s.rssBytes / 2 ** 20),
    ),
    halfMin: min(secondHalf.map((s) => s.rssBytes)),
    halfMax: max(secondHalf.map((s) => s.rssBytes)),
    peak: after.reduce((a, s) => (s.rssBytes > a.rssBytes ? s : a), after[0] ?? r.samples[0]!),
    heapPeak: max(after.map((s) => s.heapUsedBytes)),
    heapMin: min(r.samples.map((s) => s.heapUsedBytes)),
  };
}

type RssFigures = ReturnType<typeof rssFigures>;

/** File descriptors and child processes left after the stream and after the restarts. */
function leakFigures(r: SoakResult) {
  const baseKids = r.baseline.children.length;
  return {
    duringMax: r.duringChildren.length ? max(r.duringChildren) : 0,
    fdLeak: r.after.fds - r.baseline.fds,
    restartFdLeak: r.restarts.length ? max(r.restarts.map((x) => x.fds)) - r.baseline.fds : 0,
    childLeak: r.after.children.length - baseKids,
    restartChildLeak: r.restarts.length ? max(r.restarts.map((x) => x.children.length)) - baseKids : 0,
  };
}

type LeakFigures = ReturnType<typeof leakFigures>;

/** Why RSS left the ±5 % band, and what would keep it in. */
function rssNote(r: SoakResult, m: RssFigures): string {
  const gcNote = r.afterGc
    ? ` After the stream a full GC leaves ${round(r.afterGc.heapUsedBytes / 2 ** 20, 1)} MiB of JavaScript heap, the same as the lowest heap seen during the stream (${round(m.heapMin / 2 ** 20, 1)} MiB): nothing accumulates.`
    : '';
  return (
    `RSS peaked at ${round(m.peak.rssBytes / 2 ** 20, 1)} MiB (${round(m.peak.streamSeconds / 60, 0)} min of stream) while V8 let the heap grow to ${round(m.heapPeak / 2 ** 20, 1)} MiB used between major collections; over the second half of the stream RSS stayed within ${round(m.halfMin / 2 ** 20, 1)}–${round(m.halfMax / 2 ** 20, 1)} MiB.${gcNote} ` +
    'What limits it: V8\'s heap sizing (the per-frame garbage of tensors, logits and events is collected, but the heap is allowed to grow before it is compacted), not a leak. What would lift it: less garbage per frame in the engine (onnxruntime-node 1.30 returns new output tensors even when preallocated ones are passed, so that means fewer graph runs per frame), or a fixed V8 heap size for the daemon (node --max-semi-space-size / --max-old-space-size in the systemd unit).'
  );
}

function b6Targets(r: SoakResult, m: RssFigures, l: LeakFigures, quick: boolean): Target[] {
  const within = m.hiRatio <= 1.05 && m.loRatio >= 0.95;
  const measured = m.after.length >= 2;
  return [
    { name: 'stream time covered', target: '≥ 2 h', value: round(r.streamSeconds / 3600, 2), unit: 'h', met: quick ? null : r.streamSeconds >= 7200 - 1 },
    {
      name: 'RSS after warm-up within ±5 % of its value at the end of warm-up',
      target: '0.95 … 1.05',
      value: `${round(m.loRatio, 3)} … ${round(m.hiRatio, 3)}`,
      met: measured ? within : null,
      ...(!measured
        ? { note: `The run (${round(r.wallSeconds, 1)} s) ended before the warm-up did: too short to tell.` }
        : within
          ? {}
          : { note: rssNote(r, m) }),
    },
    { name: 'KV tokens ≤ the cap', target: `≤ ${r.cap}`, value: r.maxKvTokens, unit: 'tokens', met: r.maxKvTokens <= r.cap },
    { name: 'file descriptors leaked (after the stream, and after restarts)', target: '0', value: `${l.fdLeak} / ${l.restartFdLeak}`, met: l.fdLeak <= 0 && l.restartFdLeak <= 0 },
    { name: 'child processes left (after the stream, and after restarts)', target: '0', value: `${l.childLeak} / ${l.restartChildLeak}`, met: l.childLeak <= 0 && l.restartChildLeak <= 0 },
    { name: 'dropped frames', target: '0', value: r.droppedFrames, met: r.droppedFrames === 0 },
  ];
}

function b6Results(r: SoakResult, m: RssFigures, l: LeakFigures): Record<string, unknown> {
  return {
    frames: r.frames,
    streamHours: round(r.streamSeconds / 3600, 3),
    wallSeconds: r.wallSeconds,
    speedVsRealTime: round(r.streamSeconds / r.wallSeconds, 2),
    warmup: { frames: m.warmFrames, wallSeconds: m.warmWallS },
    rssAtWarmupEndMiB: round(m.ref / 2 ** 20, 1),
    rssMinMaxAfterWarmupMiB: [round(m.rssMin / 2 ** 20, 1), round(m.rssMax / 2 ** 20, 1)],
    rssRatioRange: [round(m.loRatio, 4), round(m.hiRatio, 4)],
    rssRatioRangeFractionOnlyWarmup: { frames: m.fractionOnly.warmFrames, wallSeconds: m.fractionOnly.warmWallS, range: [round(m.fractionOnly.loRatio, 4), round(m.fractionOnly.hiRatio, 4)] },
    rssSlopeMiBPerStreamHour: round(m.slope.slope, 2),
    rssSecondHalfMinMaxMiB: [round(m.halfMin / 2 ** 20, 1), round(m.halfMax / 2 ** 20, 1)],
    rssPeak: { mib: round(m.peak.rssBytes / 2 ** 20, 1), atStreamMinutes: round(m.peak.streamSeconds / 60, 1) },
    heapUsedPeakAfterWarmupMiB: round(m.heapPeak / 2 ** 20, 1),
    cap: r.cap,
    maxKvTokens: r.maxKvTokens,
    maxKvBytes: r.maxKvBytes,
    evictions: r.samples[r.samples.length - 1]?.evictions ?? 0,
    fds: { before: r.baseline.fds, after: r.after.fds, afterRestarts: r.restarts.map((x) => x.fds) },
    children: { before: r.baseline.children, duringMax: l.duringMax, after: r.after.children, afterRestarts: r.restarts.map((x) => x.children) },
    droppedFrames: r.droppedFrames,
    memoryAfterFullGc: r.afterGc,
    heapUsedMinDuringStreamBytes: r.samples.length ? min(r.samples.map((s) => s.heapUsedBytes)) : null,
    errors: r.errors,
  };
}

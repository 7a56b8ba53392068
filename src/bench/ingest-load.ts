/**
 * B3's ingest-only measurements, run inside a bench worker process (src/bench/worker.ts):
 * N frame sources exactly as the caption pipelines open them (one ffmpeg child each reading
 * the clip at native speed, sampled at 2 fps, scaled to the model's input size) with no model
 * behind them: the ingest ceiling, and the decode CPU per stream (the ffmpeg children's CPU
 * from /proc) for an input and a set of decode options.
 */
import { readFileSync } from 'node:fs';
import { openFrameSource, type FrameSource } from '../ingest/index.js';
import { machineCpu, machineCpuPercent, sleep, widenFfmpegStarts } from './common.js';
import { deliveryDelay, percentile, round, type Arrival } from './stats.js';
import type { IngestTrialResult, IngestTrialTask } from './tasks.js';

/** One source of a trial: each frame's pts and arrival. */
interface IngestStream {
  source: FrameSource;
  arrivals: Arrival[];
  done: Promise<void>;
  error?: string;
}

function startStream(t: IngestTrialTask, i: number): IngestStream {
  const source = openFrameSource({
    input: t.clip.replace('{i}', String(i)),
    width: t.width,
    height: t.height,
    fps: t.fps,
    realtime: t.realtime,
    ...(t.decode ? { decode: t.decode } : {}),
  });
  const s: IngestStream = { source, arrivals: [], done: Promise.resolve() };
  s.done = (async () => {
    try {
      for await (const f of source.frames()) s.arrivals.push({ pts: f.ptsSeconds, at: f.receivedAt });
    } catch (err) {
      s.error = (err as Error).message;
    }
  })();
  return s;
}

/** CPU ticks (utime + stime) of this process's live ffmpeg children, by pid. */
export function ffmpegChildTicks(parent = process.pid): Map<number, number> {
  const out = new Map<number, number>();
  let entries: string[] = [];
  try {
    entries = readFileSync('/proc/' + parent + '/task/' + parent + '/children', 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return out;
  }
  for (const pid of entries) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (!stat.slice(stat.indexOf('(') + 1, close).startsWith('ffmpeg')) continue;
      const fields = stat.slice(close + 2).split(' ');
      out.set(Number(pid), Number(fields[11]) + Number(fields[12]));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Ticks used between two readings by the children alive at both. */
function ticksBetween(a: Map<number, number>, b: Map<number, number>): number {
  let t = 0;
  for (const [pid, v] of b) t += v - (a.get(pid) ?? v);
  return t;
}

export async function runIngestTrial(t: IngestTrialTask): Promise<IngestTrialResult> {
  widenFfmpegStarts();
  const streams: IngestStream[] = [];
  for (let i = 0; i < t.streams; i++) {
    streams.push(startStream(t, i));
    if (t.streams > 1) await sleep(t.staggerMs / t.streams);
  }
  const until = Date.now() + 120_000;
  while (Date.now() < until && streams.some((s) => s.arrivals.length === 0 && !s.error)) await sleep(50);
  await sleep(t.warmupS * 1000);
  const dropped0 = streams.map((s) => s.source.droppedFrames);
  const ticks0 = ffmpegChildTicks();
  const cpu0 = process.cpuUsage();
  const m0 = machineCpu();
  const w0 = Date.now();
  const p0 = performance.now();
  await sleep(t.measureS * 1000);
  const w1 = Date.now();
  const elapsed = (performance.now() - p0) / 1000;
  const ticks1 = ffmpegChildTicks();
  const cpu = process.cpuUsage(cpu0);
  const m1 = machineCpu();
  const dropped = streams.reduce((a, s, i) => a + s.source.droppedFrames - (dropped0[i] ?? 0), 0);
  await Promise.all(streams.map((s) => s.source.stop()));
  await Promise.all(streams.map((s) => s.done));
  return trialResult(t, streams, { w0, w1, elapsed, dropped, ffmpegTicks: ticksBetween(ticks0, ticks1), children: ticks1.size, cpu, machine: machineCpuPercent(m0, m1) });
}

/**
 * A frame's lateness: its delivery delay (stats.ts deliveryDelay; only differences of it are used).
 * Its spread (p99 − p50, "jitter") is the delivery's own: the live server writes whole
 * chunks and ffmpeg's fps filter releases a sampled frame when a later one arrives, so it
 * is ~300–600 ms even on an idle machine and says nothing about keeping up. Falling behind
 * shows as *drift*: the median lateness of the window's last third less that of its first
 * third (0 while the ingest keeps up, growing without bound when it does not).
 */
function lateness(streams: readonly IngestStream[], w0: number, w1: number): { arrived: number; jitterP99: number; drift: number } {
  const late: number[] = [];
  const head: number[] = [];
  const tail: number[] = [];
  const third = (w1 - w0) / 3;
  for (const s of streams) {
    const delay = deliveryDelay(s.arrivals);
    for (const a of s.arrivals) {
      if (a.at < w0 || a.at >= w1) continue;
      const x = delay(a);
      late.push(x);
      if (a.at < w0 + third) head.push(x);
      else if (a.at >= w1 - third) tail.push(x);
    }
  }
  return {
    arrived: late.length,
    jitterP99: late.length ? percentile(late, 99) - percentile(late, 50) : NaN,
    drift: head.length && tail.length ? percentile(tail, 50) - percentile(head, 50) : NaN,
  };
}

function trialResult(
  t: IngestTrialTask,
  streams: IngestStream[],
  w: { w0: number; w1: number; elapsed: number; dropped: number; ffmpegTicks: number; children: number; cpu: NodeJS.CpuUsage; machine: number | null },
): IngestTrialResult {
  const { arrived, jitterP99, drift } = lateness(streams, w.w0, w.w1);
  const expected = Math.round(t.streams * t.fps * w.elapsed);
  const errors = streams.flatMap((s) => (s.error ? [s.error] : []));
  const reasons: string[] = [];
  if (w.dropped > 0) reasons.push(`${w.dropped} frames dropped`);
  if (arrived + w.dropped < expected - t.streams) reasons.push(`ingest fell behind real time: ${arrived + w.dropped} frames arrived of ${expected} expected`);
  if (!(drift <= t.driftBudgetMs)) reasons.push(`frames arrived ${round(drift, 1)} ms later at the end of the window than at its start (> ${t.driftBudgetMs} ms)`);
  if (errors.length) reasons.push(`${errors.length} stream errors`);
  const hz = 100; // USER_HZ: /proc ticks per second on Linux
  return {
    streams: t.streams,
    pass: reasons.length === 0,
    reasons,
    measureSeconds: round(w.elapsed, 2),
    framesArrived: arrived,
    framesExpected: expected,
    dropped: w.dropped,
    latenessP99Ms: round(jitterP99, 1),
    latenessDriftMs: round(drift, 1),
    ffmpegChildren: w.children,
    ffmpegCpuPercent: round((w.ffmpegTicks / hz / w.elapsed) * 100, 1),
    ffmpegCpuPercentPerStream: round((w.ffmpegTicks / hz / w.elapsed / Math.max(1, w.children)) * 100, 3),
    nodeCpuPercent: round(((w.cpu.user + w.cpu.system) / 1e6 / w.elapsed) * 100, 1),
    machineCpuPercent: w.machine,
    errors: errors.slice(0, 5),
    sampledPts: streams[0]?.arrivals.slice(0, t.keepPts).map((a) => round(a.pts, 3)) ?? [],
  };
}

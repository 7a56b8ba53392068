/**
 * B3's ingest side: the live server its streams read, the decode CPU per stream for several
 * inputs and decode options, and the ingest-only ceiling (the same ffmpeg children with no
 * model behind them).
 */
import { inWorker, WorkerHandle } from '../common.js';
import type { SuiteContext } from '../context.js';
import type { Clip } from '../inputs.js';
import { round } from '../stats.js';
import type { IngestTrialResult, IngestTrialTask } from '../tasks.js';
import type { DecodeOptions } from '../../ingest/index.js';

export interface DecodeInput {
  name: string;
  width: number;
  height: number;
  fps: number;
  /** Camera-like noise (see ClipSpec.noise); 0: the synthetic world's flat blocks. */
  noise: number;
}

export interface DecodeParams {
  streams: number;
  warmupS: number;
  measureS: number;
  clipSeconds: number;
  inputs: DecodeInput[];
  variants: Record<string, DecodeOptions | null>;
  /** Sampled frames compared between variants (the first stream's first ones). */
  comparePts: number;
}

/** The live server (its own process) serving one MPEG-TS clip; input URL "{i}" per stream. */
export interface LiveServer {
  url: string;
  stop(): Promise<{ served: number; cpuMicros: number }>;
}

export async function startLive(ctx: SuiteContext, clip: Clip, label: string): Promise<LiveServer> {
  const w = new WorkerHandle(ctx.log, { label });
  const r = await w.call<{ port: number }>({ kind: 'live-server', clip: clip.path });
  return {
    url: `http://127.0.0.1:${r.port}/live/{i}.ts`,
    async stop() {
      const s = await w.call<{ served: number; cpuMicros: number }>({ kind: 'live-server-stop' });
      await w.close();
      return s;
    },
  };
}

export function ingestTask(input: string, realtime: boolean, streams: number, o: { warmupS: number; measureS: number; decode?: DecodeOptions | null; keepPts?: number }): IngestTrialTask {
  return {
    kind: 'ingest-trial',
    clip: input,
    realtime,
    streams,
    width: 64,
    height: 64,
    fps: 2,
    staggerMs: 500,
    warmupS: o.warmupS,
    measureS: o.measureS,
    ...(o.decode ? { decode: o.decode } : {}),
    driftBudgetMs: 250,
    keepPts: o.keepPts ?? 0,
  };
}

export interface DecodeRow {
  input: string;
  delivery: 'live HTTP' | 'file, -re';
  variant: string;
  decode: DecodeOptions | null;
  streams: number;
  cpuPercentPerStream: number;
  framesArrived: number;
  framesExpected: number;
  /** Sampled frames whose time differs from the default decoding's, of those compared, and the largest shift (s). */
  sampledChanged: { compared: number; changed: number; maxShiftS: number; missing: number } | null;
  trial: IngestTrialResult;
}

/** What a variant's sampled frames change against the default's (the first stream's first frames). */
function comparePts(base: readonly number[], pts: readonly number[], n: number): DecodeRow['sampledChanged'] {
  const a = base.slice(0, n);
  if (!a.length) return null;
  let changed = 0;
  let maxShift = 0;
  a.forEach((t, i) => {
    const u = pts[i];
    if (u === undefined || Math.abs(u - t) > 1e-3) changed++;
    if (u !== undefined) maxShift = Math.max(maxShift, Math.abs(u - t));
  });
  return { compared: a.length, changed, maxShiftS: round(maxShift, 3), missing: Math.max(0, a.length - pts.length) };
}

/** Decode CPU per stream: each input served live, each decode variant; and the file + -re emulation for the first. */
export async function decodeCpuTable(ctx: SuiteContext, p: DecodeParams, fileClip: Clip): Promise<DecodeRow[]> {
  const rows: DecodeRow[] = [];
  const keepPts = p.comparePts;
  for (const input of p.inputs) {
    const clip = await ctx.clip({ seconds: p.clipSeconds, width: input.width, height: input.height, fps: input.fps, name: 'decode-clip', format: 'ts', ...(input.noise ? { noise: input.noise } : {}) });
    const live = await startLive(ctx, clip, `live ${input.name}`);
    let base: number[] | undefined;
    try {
      for (const [variant, decode] of Object.entries(p.variants)) {
        ctx.log(`B3 decode CPU: ${input.name}, live HTTP, ${variant}, ${p.streams} streams`);
        const trial = await inWorker<IngestTrialResult>(ctx.log, 'B3 decode', ingestTask(live.url, false, p.streams, { ...p, decode, keepPts }));
        base ??= trial.sampledPts;
        rows.push(decodeRow(ctx.log, input.name, 'live HTTP', variant, decode, trial, variant === Object.keys(p.variants)[0] ? null : comparePts(base, trial.sampledPts, keepPts)));
      }
    } finally {
      await live.stop();
    }
  }
  const first = Object.entries(p.variants)[0];
  if (first) {
    ctx.log(`B3 decode CPU: ${fileClip.width}x${fileClip.height} file read with -re (the emulation of a camera B3 used before), ${first[0]}`);
    const trial = await inWorker<IngestTrialResult>(ctx.log, 'B3 decode', ingestTask(fileClip.path, true, p.streams, { ...p, decode: first[1] }));
    rows.push(decodeRow(ctx.log, `${fileClip.width}x${fileClip.height} ${fileClip.fps} fps`, 'file, -re', first[0], first[1], trial, null));
  }
  return rows;
}

function decodeRow(log: (line: string) => void, input: string, delivery: DecodeRow['delivery'], variant: string, decode: DecodeOptions | null, trial: IngestTrialResult, changed: DecodeRow['sampledChanged']): DecodeRow {
  log(`  → ${trial.ffmpegCpuPercentPerStream}% of a core per stream, ${trial.framesArrived}/${trial.framesExpected} frames`);
  return { input, delivery, variant, decode, streams: trial.streams, cpuPercentPerStream: trial.ffmpegCpuPercentPerStream, framesArrived: trial.framesArrived, framesExpected: trial.framesExpected, sampledChanged: changed, trial };
}

/**
 * The measurement of `casa-live bench --suite worker` (run in a bench worker process): N
 * sessions of one model — the ONNX engine in process, or the PyTorch worker (torch:) —
 * each captioning the same frames concurrently with forced generation (exactly `tokens`
 * tokens per frame), after a warm-up. Reports frames/s over all sessions and, for the
 * worker, the protocol's cost per frame: time in captionFrame minus time inside the worker.
 */
import { readFileSync } from 'node:fs';
import { loadModel, type CaptionSessionLike, type EngineFrame } from '../engine.js';
import { forcedGeneration } from './common.js';
import { median, round } from './stats.js';

export interface EngineStreamsTask {
  kind: 'engine-streams';
  /** A bundle directory (ONNX) or torch:<bundle> (the worker). */
  ref: string;
  streams: number;
  frames: number;
  warmup: number;
  tokens: number;
  framesPath: string;
  width: number;
  height: number;
}

export interface EngineStreamsResult {
  ref: string;
  engine: string;
  streams: number;
  framesPerStream: number;
  seconds: number;
  fps: number;
  /** Median over sessions of (time in captionFrame − time inside the worker) per frame; null for ONNX. */
  protocolMsPerFrame: number | null;
  /** Median over sessions of the mean time in captionFrame per frame. */
  frameMs: number;
  /** Median over sessions of the mean time inside the worker per frame; null for ONNX. */
  workerFrameMs: number | null;
  loadSeconds: number;
}

type Timed = CaptionSessionLike & { timings?: () => { frameMs: number; workerFrameMs: number } };

function frameAt(all: Buffer, i: number, w: number, h: number): EngineFrame {
  const bytes = w * h * 3;
  const k = i % Math.floor(all.length / bytes);
  return { index: i, ptsSeconds: i / 2, receivedAt: Date.now(), width: w, height: h, rgb: all.subarray(k * bytes, (k + 1) * bytes) };
}

async function run(s: CaptionSessionLike, all: Buffer, t: EngineStreamsTask, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) await s.caption(frameAt(all, i, t.width, t.height));
}

export async function runEngineStreams(t: EngineStreamsTask): Promise<EngineStreamsResult> {
  const all = readFileSync(t.framesPath);
  const l0 = performance.now();
  const model = await loadModel(t.ref, { intraOpNumThreads: 1, worker: { threads: 1 } });
  const loadSeconds = (performance.now() - l0) / 1000;
  try {
    const sessions = (await Promise.all(Array.from({ length: t.streams }, () => model.openSession(forcedGeneration(t.tokens))))) as Timed[];
    await Promise.all(sessions.map((s) => run(s, all, t, 0, t.warmup)));
    const before = sessions.map((s) => s.timings?.() ?? { frameMs: s.stats().frameMs, workerFrameMs: 0 });
    const t0 = performance.now();
    await Promise.all(sessions.map((s) => run(s, all, t, t.warmup, t.frames)));
    const seconds = (performance.now() - t0) / 1000;
    const per = sessions.map((s, k) => {
      const now = s.timings?.() ?? { frameMs: s.stats().frameMs, workerFrameMs: 0 };
      const b = before[k] as { frameMs: number; workerFrameMs: number };
      return { frameMs: (now.frameMs - b.frameMs) / t.frames, workerMs: (now.workerFrameMs - b.workerFrameMs) / t.frames };
    });
    for (const s of sessions) s.close();
    const isWorker = model.runtime === 'worker';
    return {
      ref: t.ref,
      engine: model.runtime,
      streams: t.streams,
      framesPerStream: t.frames,
      seconds: round(seconds, 3),
      fps: round((t.streams * t.frames) / seconds, 2),
      protocolMsPerFrame: isWorker ? round(median(per.map((p) => p.frameMs - p.workerMs)), 3) : null,
      frameMs: round(median(per.map((p) => p.frameMs)), 3),
      workerFrameMs: isWorker ? round(median(per.map((p) => p.workerMs)), 3) : null,
      loadSeconds: round(loadSeconds, 2),
    };
  } finally {
    await model.release();
  }
}

/**
 * B7's measurements, run inside a bench worker process (src/bench/worker.ts):
 * - `engine-throughput`: N caption sessions of one model captioning frames back to back
 *   (5 tokens per frame), frames completed per second in a steady-state window, with the
 *   process's CPU, the rest of the machine's, the event-loop delay and the batched engine's
 *   counters;
 * - `matmul`: onnxruntime-node running one MatMul graph (A [M,K] × a weight [K,N]) of each
 *   size back to back, with 1 and more intra-op threads: the machine's fp32 matrix-product rate.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { Model, type CaptionSession, type EngineFrame } from '../engine.js';
import { forcedGeneration, machineCpu, machineCpuPercent, sleep } from './common.js';
import { mean, round } from './stats.js';
import type { EngineThroughputResult, EngineThroughputTask, MatmulResult, MatmulTask } from './tasks.js';

function progress(line: string): void {
  process.send?.({ progress: line });
}

/** Frame i of a file of concatenated rgb24 frames (looped). */
export function frameAt(all: Buffer, i: number, w: number, h: number): EngineFrame {
  const bytes = w * h * 3;
  const count = Math.floor(all.length / bytes);
  const k = i % count;
  return { index: i, ptsSeconds: i / 2, receivedAt: Date.now(), width: w, height: h, rgb: all.subarray(k * bytes, (k + 1) * bytes) };
}

/** The window's bounds and what the sessions completed inside it. */
interface LoadState {
  stop: boolean;
  w0: number;
  w1: number;
  completed: number;
  completedAll: number;
  tokens: number;
  /** Sessions with at least one frame done (warm-up ends when all have one). */
  warmed: Set<number>;
}

async function captionLoop(s: CaptionSession, k: number, all: Buffer, t: EngineThroughputTask, st: LoadState): Promise<void> {
  for (let f = 0; !st.stop; f++) {
    const r = await s.caption(frameAt(all, k * 7 + f, t.width, t.height));
    const now = performance.now();
    st.completedAll++;
    st.warmed.add(k);
    if (st.w0 > 0 && now >= st.w0 && (st.w1 === 0 || now <= st.w1)) {
      st.completed++;
      st.tokens += r.ids.length;
    }
  }
}

export async function runEngineThroughput(t: EngineThroughputTask): Promise<EngineThroughputResult> {
  const all = readFileSync(t.framesPath);
  const model = await Model.load(t.bundle, t.load);
  const o0 = performance.now();
  const sessions = await Promise.all(Array.from({ length: t.sessions }, (_, k) => model.openSession(forcedGeneration(t.tokens, k + 1))));
  const openMs = performance.now() - o0;
  const st: LoadState = { stop: false, w0: 0, w1: 0, completed: 0, completedAll: 0, tokens: 0, warmed: new Set() };
  const loops = sessions.map((s, k) => captionLoop(s, k, all, t, st));
  // Warm-up: at least warmupS, and until every session has captioned a frame.
  const warmStart = performance.now();
  while (performance.now() - warmStart < t.warmupS * 1000 || (st.warmed.size < t.sessions && performance.now() - warmStart < t.warmupLimitS * 1000)) await sleep(20);
  const kv0 = mean(sessions.map((s) => s.stats().kvTokens));
  const batch0 = model.batchStats();
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const cpu0 = process.cpuUsage();
  const m0 = machineCpu();
  st.w0 = performance.now();
  // At least measureS, and until every session has had minFramesPerSession frames on average
  // (the unbatched engine completes its sessions' frames in bunches), within maxMeasureS.
  await sleep(t.measureS * 1000);
  while (st.completed < t.minFramesPerSession * t.sessions && performance.now() - st.w0 < t.maxMeasureS * 1000) await sleep(20);
  st.w1 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const m1 = machineCpu();
  loop.disable();
  const batch1 = model.batchStats();
  const kv1 = mean(sessions.map((s) => s.stats().kvTokens));
  const rss = process.memoryUsage.rss();
  st.stop = true;
  await Promise.all(loops);
  for (const s of sessions) s.close();
  await model.release();
  const seconds = (st.w1 - st.w0) / 1000;
  const ownPercent = ((cpu.user + cpu.system) / 1e6 / seconds) * 100;
  const machine = machineCpuPercent(m0, m1);
  const cores = os.cpus().length;
  const result: EngineThroughputResult = {
    engine: t.engine,
    sessions: t.sessions,
    frames: st.completed,
    seconds: round(seconds, 3),
    fps: round(st.completed / seconds, 2),
    tokensPerFrame: round(st.tokens / Math.max(1, st.completed), 3),
    framesPerCpuSecond: round(st.completed / ((cpu.user + cpu.system) / 1e6), 1),
    processCpuPercent: round(ownPercent, 1),
    othersCpuPercent: machine === null ? null : round(Math.max(0, machine * cores - ownPercent), 1),
    eventLoopDelayP99Ms: round(loop.percentile(99) / 1e6, 2),
    meanKvTokens: round((kv0 + kv1) / 2, 1),
    openSessionsMs: round(openMs, 1),
    warmupSeconds: round((st.w0 - warmStart) / 1000, 2),
    rssBytes: rss,
    engineInfo: model.engine,
    ...(batch0 && batch1
      ? {
          batch: {
            decoderRuns: batch1.decoderRuns - batch0.decoderRuns,
            rowsPerDecoderRun: round((batch1.decoderRows - batch0.decoderRows) / Math.max(1, batch1.decoderRuns - batch0.decoderRuns), 2),
            framesPerVisionRun: round((batch1.frames - batch0.frames) / Math.max(1, batch1.frameRuns - batch0.frameRuns), 2),
            workerBusyShare: round((batch1.busyMs - batch0.busyMs) / (seconds * 1000 * batch1.workers), 3),
            chainedSteps: batch1.chainedSteps - batch0.chainedSteps,
            chainedRolledBack: batch1.chainedRolledBack - batch0.chainedRolledBack,
          },
        }
      : {}),
  };
  progress(`${t.engine}, ${t.sessions} sessions: ${result.fps} frames/s (${result.framesPerCpuSecond} per CPU-s; others ${result.othersCpuPercent ?? '?'}% of a core)`);
  return result;
}

export async function runMatmul(t: MatmulTask): Promise<MatmulResult> {
  const out: MatmulResult = { runs: [] };
  for (const threads of t.threads) {
    for (const g of t.graphs) {
      const session = await InferenceSession.create(g.path, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        executionProviders: ['cpu'],
        logSeverityLevel: 3,
      });
      const a = new Tensor('float32', Float32Array.from({ length: g.m * g.k }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5), [g.m, g.k]);
      const feeds = { A: a };
      await session.run(feeds);
      let runs = 0;
      const start = performance.now();
      while (performance.now() - start < t.seconds * 1000) {
        await session.run(feeds);
        runs++;
      }
      const seconds = (performance.now() - start) / 1000;
      await session.release();
      out.runs.push({ m: g.m, k: g.k, n: g.n, threads, runs, seconds: round(seconds, 3), gflops: round((2 * g.m * g.k * g.n * runs) / seconds / 1e9, 3) });
    }
  }
  return out;
}

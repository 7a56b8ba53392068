#!/usr/bin/env node
// node bench/batch-throughput.mjs [--sessions 1,8,64,256] [--seconds 5] [--engines unbatched,w1i1,w2i1,w1i2]
//                                 [--gather 2] [--frame-gather 80] [--max 64] [--bundle models/casa-tiny] [--out FILE]
// Captioned frames per second against the number of concurrent sessions, for the unbatched
// engine and batched ones (workers × intra-op threads), in one run: every session captions
// noise frames back to back with exactly 5 tokens per frame (EOS masked, as B2 and B7 do),
// for --seconds after one warm-up frame each. Also the main thread's event-loop delay p99
// (perf_hooks monitorEventLoopDelay) while it runs, the batched engine's rows per run, and
// frames per CPU-second of the process (the figure least disturbed by other load).
// Builds nothing: run `npm run build` first. Writes bench/results/tmp/batch-throughput.json.
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Model } from '../dist/engine.js';
import { arg, FRAMES as frames, root, SESSION, writeResult } from './engine-load-common.mjs';

const SESSIONS = arg('sessions', '1,8,64,256').split(',').map(Number);
const SECONDS = Number(arg('seconds', '5'));
const BUNDLE = path.resolve(root, arg('bundle', 'models/casa-tiny'));
const GATHER = Number(arg('gather', '2'));
const FRAME_GATHER = Number(arg('frame-gather', '80'));
const MAX = Number(arg('max', '64'));
const OUT = path.resolve(root, arg('out', 'bench/results/tmp/batch-throughput.json'));
const ENGINES = {
  unbatched: { batch: false },
  w1i1: { batch: { workers: 1, maxSize: MAX, gatherMs: GATHER, frameGatherMs: FRAME_GATHER }, intraOpNumThreads: 1 },
  w2i1: { batch: { workers: 2, maxSize: MAX, gatherMs: GATHER, frameGatherMs: FRAME_GATHER }, intraOpNumThreads: 1 },
  w1i2: { batch: { workers: 1, maxSize: MAX, gatherMs: GATHER, frameGatherMs: FRAME_GATHER }, intraOpNumThreads: 2 },
};

const engines = arg('engines', Object.keys(ENGINES).join(',')).split(',');

async function measure(engine, n) {
  const model = await Model.load(BUNDLE, ENGINES[engine]);
  const sessions = await Promise.all(Array.from({ length: n }, () => model.openSession(SESSION)));
  await Promise.all(sessions.map((s, k) => s.caption(frames[k % frames.length])));
  const before = model.batchStats();
  const eld = monitorEventLoopDelay({ resolution: 5 });
  let count = 0;
  let tokens = 0;
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  eld.enable();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    sessions.map(async (s, k) => {
      for (let f = 1; performance.now() < end; f++) {
        const r = await s.caption(frames[(k + f) % frames.length]);
        count++;
        tokens += r.ids.length;
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  eld.disable();
  const after = model.batchStats();
  for (const s of sessions) s.close();
  await model.release();
  const runs = after && before ? after.decoderRuns - before.decoderRuns : undefined;
  return {
    engine,
    sessions: n,
    framesPerSecond: Math.round((count / wall) * 10) / 10,
    frames: count,
    tokensPerFrame: Math.round((tokens / count) * 100) / 100,
    seconds: Math.round(wall * 100) / 100,
    eventLoopDelayP99Ms: Math.round((eld.percentile(99) / 1e6) * 100) / 100,
    eventLoopDelayMaxMs: Math.round((eld.max / 1e6) * 100) / 100,
    processCpuSeconds: Math.round(((cpu.user + cpu.system) / 1e6) * 100) / 100,
    // Frames per second of CPU the process got: less sensitive than frames/s to other load on a shared machine.
    framesPerCpuSecond: Math.round(count / ((cpu.user + cpu.system) / 1e6)),
    ...(runs !== undefined
      ? {
          decoderRuns: runs,
          rowsPerRun: Math.round(((after.decoderRows - before.decoderRows) / Math.max(1, runs)) * 10) / 10,
          workerBusyShare: Math.round(((after.busyMs - before.busyMs) / (wall * 1000 * after.workers)) * 100) / 100,
          msPerDecoderRun: Math.round(((after.decoderMs - before.decoderMs) / Math.max(1, runs)) * 100) / 100,
          decoderShareOfBusy: Math.round(((after.decoderMs - before.decoderMs) / Math.max(1, after.busyMs - before.busyMs)) * 100) / 100,
          frameShareOfBusy: Math.round(((after.frameMs - before.frameMs) / Math.max(1, after.busyMs - before.busyMs)) * 100) / 100,
        }
      : {}),
  };
}

const results = [];
for (const n of SESSIONS) {
  for (const engine of engines) {
    const r = await measure(engine, n);
    results.push(r);
    console.log(JSON.stringify(r));
  }
}
const summary = SESSIONS.map((n) => {
  const row = { sessions: n };
  for (const e of engines) row[e] = results.find((r) => r.sessions === n && r.engine === e)?.framesPerSecond;
  for (const e of engines) row[`${e}/cpu-s`] = results.find((r) => r.sessions === n && r.engine === e)?.framesPerCpuSecond;
  if (row.unbatched) for (const e of engines) if (e !== 'unbatched') row[`${e}/unbatched`] = Math.round((row[e] / row.unbatched) * 100) / 100;
  return row;
});
console.table(summary);
writeResult(OUT, 'batch-throughput (bench/batch-throughput.mjs)', BUNDLE, { settings: { seconds: SECONDS, gatherMs: GATHER, frameGatherMs: FRAME_GATHER, maxSize: MAX, session: SESSION }, summary, results });

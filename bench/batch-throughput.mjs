#!/usr/bin/env node
// node bench/batch-throughput.mjs [--sessions 1,8,64,256] [--seconds 5] [--engines unbatched,w1i1,w2i1,w1i2]
//                                 [--gather 2] [--frame-gather 80] [--max 64] [--bundle models/casa-tiny]
//                                 [--dist dist] [--out FILE]
// Captioned frames per second against the number of concurrent sessions, for the unbatched
// engine and batched ones (workers × intra-op threads), in one run: every session captions
// noise frames back to back with exactly 5 tokens per frame (EOS masked, as B2 and B7 do),
// for --seconds after one warm-up frame each. Also the main thread's event-loop delay p99
// (perf_hooks monitorEventLoopDelay) while it runs, the batched engine's rows per run, and
// frames per CPU-second of the process (the figure least disturbed by other load). `--dist`
// measures another build of the engine (a copy of dist/ with a change, to compare builds).
// Builds nothing: run `npm run build` first. Writes bench/results/tmp/batch-throughput.json.
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { arg, DIST, distModule, FRAMES as frames, measureGrid, ratio, root, round, SESSION, statsDelta, writeResult } from './engine-load-common.mjs';

const SESSIONS = arg('sessions', '1,8,64,256').split(',').map(Number);
const SECONDS = Number(arg('seconds', '5'));
const BUNDLE = path.resolve(root, arg('bundle', 'models/casa-tiny'));
const GATHER = Number(arg('gather', '2'));
const FRAME_GATHER = Number(arg('frame-gather', '80'));
const MAX = Number(arg('max', '64'));
const OUT = path.resolve(root, arg('out', 'bench/results/tmp/batch-throughput.json'));
const { Model } = await distModule('engine.js');
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
  const d = after && before ? statsDelta(before, after) : undefined;
  return {
    engine,
    sessions: n,
    framesPerSecond: round(count / wall, 1),
    frames: count,
    tokensPerFrame: round(tokens / count, 2),
    seconds: round(wall, 2),
    eventLoopDelayP99Ms: round(eld.percentile(99) / 1e6, 2),
    eventLoopDelayMaxMs: round(eld.max / 1e6, 2),
    processCpuSeconds: round((cpu.user + cpu.system) / 1e6, 2),
    // Frames per second of CPU the process got: less sensitive than frames/s to other load on a shared machine.
    framesPerCpuSecond: Math.round(count / ((cpu.user + cpu.system) / 1e6)),
    ...(d !== undefined
      ? {
          decoderRuns: d.decoderRuns,
          rowsPerRun: ratio(d.decoderRows, d.decoderRuns),
          workerBusyShare: round(d.busyMs / (wall * 1000 * after.workers), 2),
          msPerDecoderRun: ratio(d.decoderMs, d.decoderRuns, 2),
          decoderShareOfBusy: ratio(d.decoderMs, d.busyMs, 2),
          frameShareOfBusy: ratio(d.frameMs, d.busyMs, 2),
        }
      : {}),
  };
}

const results = await measureGrid(SESSIONS, engines, (n, engine) => measure(engine, n));
const summary = SESSIONS.map((n) => {
  const row = { sessions: n };
  for (const e of engines) row[e] = results.find((r) => r.sessions === n && r.engine === e)?.framesPerSecond;
  for (const e of engines) row[`${e}/cpu-s`] = results.find((r) => r.sessions === n && r.engine === e)?.framesPerCpuSecond;
  if (row.unbatched) for (const e of engines) if (e !== 'unbatched') row[`${e}/unbatched`] = round(row[e] / row.unbatched, 2);
  return row;
});
console.table(summary);
writeResult(OUT, 'batch-throughput (bench/batch-throughput.mjs)', BUNDLE, { settings: { seconds: SECONDS, dist: path.relative(root, DIST), gatherMs: GATHER, frameGatherMs: FRAME_GATHER, maxSize: MAX, session: SESSION }, summary, results });

/**
 * Worker — the PyTorch worker engine (tools/casa_worker, torch:<bundle>) against the
 * in-process ONNX engine on the same bundle: frames/s at 1 and 16 concurrent streams, and
 * the protocol's cost per frame (time in captionFrame minus time inside the worker, one
 * stream). Each configuration runs in a fresh bench process, the engines alternating, and
 * is repeated; medians are quoted. With CASA_LIVE_BENCH_WORKER_MODEL set (e.g.
 * hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC on a GPU machine) the worker rows run that model
 * instead, and the ONNX rows are left out: the way to measure a released model (README).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pythonInterpreter } from '../../install.js';
import { TOKENS_PER_FRAME, inWorker, type SuiteOutput, type Target } from '../common.js';
import type { SuiteContext } from '../context.js';
import type { EngineStreamsResult, EngineStreamsTask } from '../engine-streams.js';
import { median, round } from '../stats.js';

export interface WorkerSuiteParams {
  streams: number[];
  frames: number;
  warmup: number;
  repeats: number;
}

export function workerSuiteParams(quick: boolean): WorkerSuiteParams {
  return quick ? { streams: [1, 16], frames: 6, warmup: 2, repeats: 1 } : { streams: [1, 16], frames: 40, warmup: 4, repeats: 3 };
}

type Row = { engine: 'onnx' | 'worker'; ref: string; streams: number; runs: EngineStreamsResult[] };

function summarise(row: Row): Record<string, unknown> {
  const pick = (f: (r: EngineStreamsResult) => number | null): number | null => {
    const xs = row.runs.map(f).filter((x): x is number => x !== null);
    return xs.length ? round(median(xs), 3) : null;
  };
  return {
    engine: row.engine,
    model: row.ref,
    streams: row.streams,
    fps: pick((r) => r.fps),
    frameMs: pick((r) => r.frameMs),
    workerFrameMs: pick((r) => r.workerFrameMs),
    // With several sessions the difference also holds the wait for the other sessions' frames.
    protocolMsPerFrame: row.streams === 1 ? pick((r) => r.protocolMsPerFrame) : null,
  };
}

export async function runWorkerSuite(ctx: SuiteContext, params = workerSuiteParams(ctx.opts.quick)): Promise<SuiteOutput> {
  const { opts, log } = ctx;
  const empty = { config: { ...params }, results: {}, targets: [], notes: [], samples: {} };
  if (!existsSync(path.join(opts.root, 'tools', 'casa_worker', '__main__.py'))) {
    return { ...empty, skipped: 'the model worker (tools/casa_worker) is not in this installation' };
  }
  const stream = await ctx.stream();
  const released = process.env.CASA_LIVE_BENCH_WORKER_MODEL?.trim();
  const rows: Row[] = [];
  for (const streams of params.streams) {
    if (released) rows.push({ engine: 'worker', ref: released, streams, runs: [] });
    else for (const engine of ['onnx', 'worker'] as const) rows.push({ engine, ref: engine === 'worker' ? `torch:${opts.casa}` : opts.casa, streams, runs: [] });
  }
  for (let rep = 0; rep < params.repeats; rep++) {
    for (const row of rows) {
      const task: EngineStreamsTask = {
        kind: 'engine-streams',
        ref: row.ref,
        streams: row.streams,
        frames: params.frames,
        warmup: params.warmup,
        tokens: TOKENS_PER_FRAME,
        framesPath: stream.framesPath,
        width: stream.width,
        height: stream.height,
      };
      log(`worker suite: ${row.engine} ${row.ref}, ${row.streams} stream${row.streams === 1 ? '' : 's'}, run ${rep + 1}/${params.repeats}`);
      try {
        row.runs.push(await inWorker<EngineStreamsResult>(log, 'worker', task as unknown as { kind: string }));
      } catch (err) {
        if (row.engine === 'worker' && rep === 0 && rows.every((r) => r.engine === 'onnx' || r.runs.length === 0)) {
          return { ...empty, skipped: `the PyTorch worker could not run (${(err as Error).message.split('\n')[0]})` };
        }
        throw err;
      }
    }
  }
  const table = rows.map(summarise);
  const at = (engine: string, streams: number) => table.find((r) => r.engine === engine && r.streams === streams) ?? {};
  const one = at('worker', 1);
  const protocolMs = one.protocolMsPerFrame as number | null;
  const targets: Target[] = [
    { name: 'protocol cost per frame, one stream (captionFrame − time inside the worker)', target: '(reported)', value: protocolMs, unit: 'ms', met: null },
    ...params.streams.map((n) => ({
      name: `frames/s at ${n} stream${n === 1 ? '' : 's'}: worker / ONNX`,
      target: '(reported)',
      value: `${at('worker', n).fps ?? '—'} / ${at('onnx', n).fps ?? '—'}`,
      met: null,
    })),
  ];
  return {
    config: { ...params, tokensPerFrame: TOKENS_PER_FRAME, bundle: opts.casa, ...(released ? { workerModel: released } : {}), python: pythonInterpreter(), torchThreads: 1, onnxIntraOpThreads: 1, frames: stream.recipe },
    results: { table, protocolMsPerFrame: protocolMs },
    targets,
    notes: [
      `Each row: N sessions of one model captioning the same ${params.frames} frames each at once (after ${params.warmup} warm-up frames), exactly ${TOKENS_PER_FRAME} tokens per frame; frames/s counts every session's frames over the wall time. The worker serves all N sessions from one process, one frame at a time (CASA's streaming state lives for one frame), so its frames/s is bounded by one PyTorch process.`,
      'Protocol cost = the time captionFrame takes in casa-live minus the frame time the worker reports, with one stream: msgpack framing of the 12 KiB frame and the replies, the Unix socket, and Python\'s reading and writing. With more streams that difference also holds the wait for the other sessions\' frames, so it is not reported.',
      'casa-tiny is a 1.2 M-parameter model: PyTorch eager spends most of a frame in per-call overhead, so this compares engines on the project\'s own model, not what a released model gets on a GPU.',
    ],
    samples: { rows: rows.map((r) => ({ engine: r.engine, streams: r.streams, runs: r.runs })) },
  };
}

/**
 * B7 — batched throughput: captioned frames per second against the number of concurrent
 * sessions, the batched engine and the unbatched one side by side in the same run (each
 * measurement in a fresh process, the two engines alternated), and the physical limit
 * measured in the same run: FLOPs per frame counted from the bundle's graphs
 * (bench/physical_limit.py) and the machine's fp32 matrix-product rate (onnxruntime MatMul
 * graphs, numpy and PyTorch), so engine FLOP/s can be stated as a fraction of it.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { bundleInfo, inWorker, TOKENS_PER_FRAME, type SuiteOutput, type Target } from '../common.js';
import type { SuiteContext } from '../context.js';
import { cacheDir, type FrameStream } from '../inputs.js';
import { pythonInterpreter, pythonMissing } from '../../install.js';
import { median, round } from '../stats.js';
import type { EngineThroughputResult, EngineThroughputTask, MatmulResult } from '../tasks.js';
import type { LoadOptions } from '../../model/bundle.js';

export interface B7Params {
  sessions: number[];
  repeats: number;
  warmupS: number;
  /** Longest warm-up while waiting for every session's first frame. */
  warmupLimitS: number;
  measureS: number;
  /** The window lasts until this many frames per session on average (at most maxMeasureS). */
  minFramesPerSession: number;
  maxMeasureS: number;
  /** The engine configurations compared (name → load options). */
  engines: Record<string, LoadOptions>;
  /** Matrix-product sizes M×K×N timed for the machine's rate. */
  matmulSizes: string;
  matmulThreads: number[];
  matmulSeconds: number;
}

export const B7_ENGINES: Record<string, LoadOptions> = {
  unbatched: { batch: false, intraOpNumThreads: 1 },
  batched: { intraOpNumThreads: 1 },
};

export function b7Params(quick: boolean): B7Params {
  const common = { engines: B7_ENGINES, matmulThreads: [1, 2] };
  return quick
    ? { ...common, sessions: [1, 8, 64], repeats: 1, warmupS: 1, warmupLimitS: 20, measureS: 3, minFramesPerSession: 1, maxMeasureS: 15, matmulSizes: '64x128x384,512x512x512', matmulSeconds: 0.3 }
    : {
        ...common,
        sessions: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
        repeats: 2,
        warmupS: 3,
        warmupLimitS: 60,
        measureS: 8,
        minFramesPerSession: 3,
        maxMeasureS: 60,
        matmulSizes: '64x128x384,256x128x384,512x512x512,1024x1024x1024',
        matmulSeconds: 1.5,
      };
}

/** The target: batched ≥ 5× unbatched frames/s at 64 sessions and more. */
export const SPEEDUP_TARGET = 5;
export const SPEEDUP_FROM_SESSIONS = 64;

export interface FlopCount {
  perFrame: { constant: number; perCacheToken: number };
  rule: string;
  graphNodes: Record<string, number>;
  linearityCheck: Record<string, number>;
  atCache: Record<string, { flops: number; runs: Array<{ graph: string; dims: Record<string, number>; flops: number; unknownNodes: string[] }> }>;
}

interface PythonMatmul {
  threads: number;
  numpy: Array<{ m: number; k: number; n: number; gflops: number }>;
  torch: Array<{ m: number; k: number; n: number; gflops: number }>;
  versions: Record<string, string>;
}

export interface PhysicalLimit {
  flops: FlopCount | null;
  onnxruntime: MatmulResult | null;
  python: PythonMatmul[];
  /** Why a part was not measured. */
  missing: string[];
}

function python(root: string, args: string[], env: Record<string, string> = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    execFile(pythonInterpreter(), [path.join(root, 'bench', 'physical_limit.py'), ...args], { cwd: root, env: { ...process.env, ...env }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`bench/physical_limit.py ${args[0]} failed: ${(stderr || err.message).trim().split('\n').slice(-2).join(' ')}`));
      else resolve(JSON.parse(stdout));
    });
  });
}

/** FLOPs per frame, and matrix products in onnxruntime (1 and 2 threads), numpy and PyTorch. */
export async function physicalLimit(ctx: SuiteContext, p: B7Params): Promise<PhysicalLimit> {
  const out: PhysicalLimit = { flops: null, onnxruntime: null, python: [], missing: [] };
  if (pythonMissing(pythonInterpreter()) || !existsSync(path.join(ctx.opts.root, 'bench', 'physical_limit.py'))) {
    out.missing.push(`${pythonInterpreter()} or bench/physical_limit.py is missing: FLOPs not counted, matrix products not timed`);
    return out;
  }
  const attempt = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await f();
    } catch (err) {
      out.missing.push(`${what}: ${(err as Error).message}`);
      return undefined;
    }
  };
  ctx.log('B7: counting FLOPs per frame from the graphs (bench/physical_limit.py flops)');
  out.flops = (await attempt('FLOP count', () => python(ctx.opts.root, ['flops', '--bundle', ctx.opts.casa, '--tokens', String(TOKENS_PER_FRAME)]))) as FlopCount | null ?? null;
  const dir = path.join(cacheDir(), 'matmul-graphs');
  const graphs = (await attempt('MatMul graphs', () => python(ctx.opts.root, ['matmul-graphs', '--out', dir, '--sizes', p.matmulSizes])))as { graphs: Array<{ path: string; m: number; k: number; n: number }> } | undefined;
  if (graphs) {
    ctx.log(`B7: onnxruntime MatMul, ${p.matmulSizes}, ${p.matmulThreads.join(' and ')} threads`);
    out.onnxruntime = (await attempt('onnxruntime MatMul', () => inWorker<MatmulResult>(ctx.log, 'B7 matmul', { kind: 'matmul', graphs: graphs.graphs, threads: p.matmulThreads, seconds: p.matmulSeconds }))) ?? null;
  }
  for (const threads of p.matmulThreads) {
    ctx.log(`B7: numpy / PyTorch matmul, ${threads} thread${threads === 1 ? '' : 's'}`);
    const n = String(threads);
    const r = await attempt(`numpy/PyTorch matmul (${threads} threads)`, () =>
      python(ctx.opts.root, ['matmul-python', '--sizes', p.matmulSizes, '--threads', n, '--seconds', String(p.matmulSeconds)], { OPENBLAS_NUM_THREADS: n, OMP_NUM_THREADS: n, MKL_NUM_THREADS: n }),
    );
    if (r) out.python.push(r as PythonMatmul);
  }
  return out;
}

/** FLOPs of one frame starting at cache length `kv` (counted rule: linear in the cache length). */
export function flopsPerFrame(f: FlopCount | null, kv: number): number | null {
  return f ? f.perFrame.constant + f.perFrame.perCacheToken * kv : null;
}

/**
 * The best fp32 matrix-product rate measured (any runtime, size and thread count), GFLOP/s:
 * what the machine's cores did for this process — on a shared machine more threads can
 * measure less than one.
 */
export function machinePeak(l: PhysicalLimit): { gflops: number; how: string } | null {
  const cands: Array<{ gflops: number; how: string }> = [];
  for (const r of l.onnxruntime?.runs ?? []) cands.push({ gflops: r.gflops, how: `onnxruntime MatMul ${r.m}×${r.k}×${r.n}, ${r.threads} thread${r.threads === 1 ? '' : 's'}` });
  for (const x of l.python) {
    for (const r of x.numpy) cands.push({ gflops: r.gflops, how: `numpy matmul ${r.m}×${r.k}×${r.n}, ${x.threads} thread${x.threads === 1 ? '' : 's'}` });
    for (const r of x.torch) cands.push({ gflops: r.gflops, how: `PyTorch matmul ${r.m}×${r.k}×${r.n}, ${x.threads} thread${x.threads === 1 ? '' : 's'}` });
  }
  return cands.length ? cands.reduce((a, b) => (b.gflops > a.gflops ? b : a)) : null;
}

export async function runB7(ctx: SuiteContext, params: B7Params = b7Params(ctx.opts.quick)): Promise<SuiteOutput> {
  const stream = await ctx.stream();
  const runs = await throughputRuns(ctx, params, stream);
  const limit = await physicalLimit(ctx, params);
  const peak = machinePeak(limit);
  const rows = b7Rows(params, runs, limit, peak);
  const target = speedupTarget(rows, params);
  return {
    config: {
      ...params,
      tokensPerFrame: TOKENS_PER_FRAME,
      workload: 'N caption sessions on one loaded model, each captioning the synthetic stream\'s frames back to back (session.caption), exactly 5 sampled tokens + EOS per frame, the bundle\'s context cap',
      window: `each measurement: a fresh process, sessions opened, ${params.warmupS} s warm-up (and until every session has captioned a frame), then the frames completed inside a window of ${params.measureS} s (longer, up to ${params.maxMeasureS} s, until ${params.minFramesPerSession} frames per session completed on average) counted`,
      order: 'for each session count, the engines alternate (their order swapped on every repeat)',
      bundle: bundleInfo(ctx.opts.casa),
      framesSource: { source: stream.source, recipe: stream.recipe },
      physicalLimitCommands: {
        flops: `${pythonInterpreter()} bench/physical_limit.py flops --bundle ${path.relative(ctx.opts.root, ctx.opts.casa) || ctx.opts.casa} --tokens ${TOKENS_PER_FRAME}`,
        graphs: `${pythonInterpreter()} bench/physical_limit.py matmul-graphs --out DIR --sizes ${params.matmulSizes}`,
        python: `OPENBLAS_NUM_THREADS=T ${pythonInterpreter()} bench/physical_limit.py matmul-python --threads T --sizes ${params.matmulSizes}`,
      },
    },
    results: {
      rows,
      flopsPerFrame: limit.flops ? { ...limit.flops.perFrame, atCap: flopsPerFrame(limit.flops, Number(bundleInfo(ctx.opts.casa).maxContextTokens)) } : null,
      machinePeak: peak,
      matmul: {
        onnxruntime: limit.onnxruntime?.runs ?? [],
        numpy: limit.python.flatMap((x) => x.numpy.map((r) => ({ ...r, threads: x.threads }))),
        torch: limit.python.flatMap((x) => x.torch.map((r) => ({ ...r, threads: x.threads }))),
        versions: limit.python[0]?.versions ?? null,
      },
      missing: limit.missing,
    },
    targets: [target],
    notes: b7Notes(limit),
    samples: { runs, flops: limit.flops },
  };
}

/** Every (session count, repeat, engine) measurement in a fresh process, the engines alternated. */
async function throughputRuns(ctx: SuiteContext, p: B7Params, stream: FrameStream): Promise<EngineThroughputResult[]> {
  const out: EngineThroughputResult[] = [];
  const names = Object.keys(p.engines);
  for (const n of p.sessions) {
    for (let rep = 0; rep < p.repeats; rep++) {
      const order = rep % 2 === 0 ? names : [...names].reverse();
      for (const engine of order) {
        ctx.log(`B7: ${engine}, ${n} session${n === 1 ? '' : 's'} (run ${rep + 1}/${p.repeats})`);
        const task: EngineThroughputTask = {
          kind: 'engine-throughput',
          bundle: ctx.opts.casa,
          framesPath: stream.framesPath,
          width: stream.width,
          height: stream.height,
          sessions: n,
          engine,
          load: p.engines[engine] as LoadOptions,
          tokens: TOKENS_PER_FRAME,
          warmupS: p.warmupS,
          warmupLimitS: p.warmupLimitS,
          measureS: p.measureS,
          minFramesPerSession: p.minFramesPerSession,
          maxMeasureS: p.maxMeasureS,
        };
        out.push(await inWorker<EngineThroughputResult>(ctx.log, `B7 ${engine} ${n}`, task));
      }
    }
  }
  return out;
}

export interface B7Row {
  sessions: number;
  /** Per engine: median frames/s, frames per CPU-second, event-loop delay p99, FLOP/s. */
  engines: Record<string, { fps: number; fpsPerRun: number[]; framesPerCpuSecond: number; eventLoopDelayP99Ms: number; othersCpuPercent: number[]; gflops: number | null; shareOfPeak: number | null; rowsPerDecoderRun: number | null }>;
  /** batched ÷ unbatched frames/s. */
  speedup: number | null;
}

function b7Rows(p: B7Params, runs: readonly EngineThroughputResult[], limit: PhysicalLimit, peak: { gflops: number } | null): B7Row[] {
  return p.sessions.map((n) => {
    const engines: B7Row['engines'] = {};
    for (const name of Object.keys(p.engines)) {
      const rs = runs.filter((r) => r.sessions === n && r.engine === name);
      if (!rs.length) continue;
      const fps = median(rs.map((r) => r.fps));
      const fl = flopsPerFrame(limit.flops, median(rs.map((r) => r.meanKvTokens)));
      const gflops = fl === null ? null : (fps * fl) / 1e9;
      engines[name] = {
        fps: round(fps, 1),
        fpsPerRun: rs.map((r) => r.fps),
        framesPerCpuSecond: round(median(rs.map((r) => r.framesPerCpuSecond)), 1),
        eventLoopDelayP99Ms: round(median(rs.map((r) => r.eventLoopDelayP99Ms)), 2),
        othersCpuPercent: rs.map((r) => r.othersCpuPercent ?? NaN),
        gflops: gflops === null ? null : round(gflops, 3),
        shareOfPeak: gflops === null || !peak ? null : round(gflops / peak.gflops, 4),
        rowsPerDecoderRun: rs[0]?.batch ? round(median(rs.map((r) => r.batch?.rowsPerDecoderRun ?? 0)), 1) : null,
      };
    }
    const b = engines.batched?.fps;
    const u = engines.unbatched?.fps;
    return { sessions: n, engines, speedup: b !== undefined && u ? round(b / u, 2) : null };
  });
}

function speedupTarget(rows: readonly B7Row[], p: B7Params): Target {
  const from = rows.filter((r) => r.sessions >= SPEEDUP_FROM_SESSIONS && r.speedup !== null);
  const worst = from.length ? Math.min(...from.map((r) => r.speedup as number)) : null;
  const met = worst === null ? null : worst >= SPEEDUP_TARGET;
  const per = from.map((r) => `${r.sessions}: ${r.speedup}×`).join(', ');
  return {
    name: `batched ÷ unbatched frames/s at ≥ ${SPEEDUP_FROM_SESSIONS} sessions (the lowest ratio)`,
    target: `≥ ${SPEEDUP_TARGET}×`,
    value: worst,
    unit: '×',
    met,
    ...(met === false
      ? {
          note: `Per session count: ${per}. The unbatched engine runs every graph on the one JavaScript thread (one core at most); the batched one runs its graphs in ${p.engines.batched?.batch && typeof p.engines.batched.batch === 'object' && p.engines.batched.batch.workers ? p.engines.batched.batch.workers : 'one per core'} worker threads, so its ceiling is the cores not used by the main thread's sampling and protocol and by other processes (othersCpuPercent per run). What would lift it: fewer graph runs per frame (vision and casa_kv fused, a frame's EOS fed with the next frame's markers), sampling in the workers (no round trip per token).`,
        }
      : met === null
        ? { note: `no session count ≥ ${SPEEDUP_FROM_SESSIONS} was measured with both engines` }
        : {}),
  };
}

function b7Notes(limit: PhysicalLimit): string[] {
  return [
    'Frames/s = frames completed inside the measured window ÷ its length, all sessions together; frames per CPU-second = the same frames ÷ the CPU time of the whole process (main thread and inference workers), the figure least moved by other processes on a shared machine (othersCpuPercent: everything else on the machine during the window, in % of one core).',
    `FLOPs per frame: ${limit.flops ? limit.flops.rule : 'not counted'} Engine FLOP/s = frames/s × FLOPs per frame at the sessions' mean cache length in the window.`,
    'The machine\'s fp32 matrix-product rate: onnxruntime-node running a MatMul graph (A [M,K] input × B [K,N] weight) back to back with 1 and 2 intra-op threads, and numpy (its BLAS) and PyTorch matmul with as many threads; the peak is the best of them (any size and thread count: on a shared machine two threads can measure less than one), and the model-sized product (64×128×384: 64 stream rows through a 128→384 projection) shows what such small matrices reach.',
    ...limit.missing.map((m) => `Not measured: ${m}.`),
  ];
}

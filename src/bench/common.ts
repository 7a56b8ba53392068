/**
 * Shared pieces of `casa-live bench`: options, the result envelope every suite writes
 * (machine, versions, command, raw samples), machine readings (/proc) and the worker
 * processes the measurements run in.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { ffmpegStarts } from '../ingest/index.js';
import { packageRoot } from '../install.js';
import { VERSION } from '../version.js';

export type SuiteId = 'b1' | 'b2' | 'b3' | 'b4' | 'b5' | 'b6' | 'b7' | 'b8' | 'worker';
export const SUITE_IDS: readonly SuiteId[] = ['b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8', 'worker'];

export const SUITE_FILES: Record<SuiteId, string> = {
  b1: 'b1-casa-vs-insertion',
  b2: 'b2-engine-vs-pytorch',
  b3: 'b3-capacity',
  b4: 'b4-latency',
  b5: 'b5-ws-fanout',
  b6: 'b6-soak',
  b7: 'b7-batch-throughput',
  b8: 'b8-cluster',
  worker: 'worker-engine',
};

export const SUITE_TITLES: Record<SuiteId, string> = {
  b1: 'B1 — CASA vs token insertion on a long stream',
  b2: 'B2 — engine vs the PyTorch reference',
  b3: 'B3 — capacity: concurrent real-time streams',
  b4: 'B4 — latency: frame arrival → first token / caption',
  b5: 'B5 — WebSocket fan-out',
  b6: 'B6 — soak',
  b7: 'B7 — batched throughput and the physical limit',
  b8: 'B8 — cluster: failover time and fan-out over nodes',
  worker: 'Worker — the PyTorch worker engine vs the in-process ONNX engine',
};

export interface BenchOptions {
  quick: boolean;
  suites: SuiteId[];
  outDir: string;
  /** CASA bundle and its insertion twin. */
  casa: string;
  insertion: string;
  /** Per-run progress lines (stderr). */
  log: (line: string) => void;
  /** Repository / package root (tools/, bench/ live here). */
  root: string;
  /** The command line, as recorded in the results. */
  command: string;
}

/** Forced generation used by every suite: exactly `tokens` tokens per frame (see docs/benchmarks.md). */
export function forcedGeneration(tokens: number, seed = 1): {
  temperature: number;
  greedyProcessors: boolean;
  eosBias: number;
  repetitionPenalty: number;
  maxNewTokensPerFrame: number;
  seed: number;
} {
  return { temperature: 0, greedyProcessors: true, eosBias: -1e9, repetitionPenalty: 1, maxNewTokensPerFrame: tokens, seed };
}

export const TOKENS_PER_FRAME = 5;

/**
 * ffmpeg children a bench process starts at once (the daemon's start queue allows
 * max(2, cores), src/ingest/start-queue.ts). A live stream's start (probing, then waiting for
 * a keyframe) takes ~2 s, mostly waiting: with 2 slots a trial of 192 streams spent over
 * 2 minutes starting, beyond the trial's start-up limit, and the streams still starting
 * counted as an ingest that fell behind. Start-up is not what the trials measure.
 */
export const BENCH_FFMPEG_START_SLOTS = 16;

/** Lets this (bench worker) process start BENCH_FFMPEG_START_SLOTS ffmpeg children at once. */
export function widenFfmpegStarts(): void {
  ffmpegStarts.setLimit(BENCH_FFMPEG_START_SLOTS);
}

export interface Target {
  name: string;
  target: string;
  value: number | string | null;
  unit?: string;
  met: boolean | null;
  /** Why it was missed, and what would lift it (for misses). */
  note?: string;
}

export interface SuiteResult {
  suite: SuiteId;
  title: string;
  quick: boolean;
  command: string;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: MachineInfo;
  versions: Record<string, string>;
  /** Parameters of the run. */
  config: Record<string, unknown>;
  /** The headline figures. */
  results: Record<string, unknown>;
  targets: Target[];
  notes: string[];
  /** Plots written next to the JSON. */
  plots: string[];
  /** Raw measurements. */
  samples: Record<string, unknown>;
  /** Set when the suite could not run (e.g. no PyTorch); results are then empty. */
  skipped?: string;
}

/** What a suite function returns; the runner adds the envelope and writes the plots. */
export interface SuiteOutput {
  config: Record<string, unknown>;
  results: Record<string, unknown>;
  targets: Target[];
  notes: string[];
  samples: Record<string, unknown>;
  skipped?: string;
}

export interface MachineInfo {
  hostname: string;
  cpuModel: string;
  cpus: number;
  totalMemoryBytes: number;
  platform: string;
  release: string;
  arch: string;
  loadAverageAtStart: number[];
  /** CPUs this process may run on (Linux Cpus_allowed_list), e.g. "0-1". */
  affinity?: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  let affinity: string | undefined;
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    affinity = /Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1];
  } catch {
    /* not Linux */
  }
  return {
    hostname: os.hostname(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpus: cpus.length,
    totalMemoryBytes: os.totalmem(),
    platform: os.platform(),
    release: os.release(),
    arch: os.arch(),
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    ...(affinity ? { affinity } : {}),
  };
}

const require = createRequire(import.meta.url);

function pkgVersion(name: string): string {
  try {
    const main = require.resolve(name);
    let dir = path.dirname(main);
    for (let i = 0; i < 5; i++) {
      const p = path.join(dir, 'package.json');
      if (existsSync(p)) {
        const j = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
        if (j.name === name && j.version) return j.version;
      }
      dir = path.dirname(dir);
    }
  } catch {
    /* absent */
  }
  return 'unknown';
}

export function versions(): Record<string, string> {
  return {
    casaLive: VERSION,
    node: process.versions.node,
    v8: process.versions.v8,
    onnxruntimeNode: pkgVersion('onnxruntime-node'),
    ws: pkgVersion('ws'),
  };
}

/** Bundle description recorded in the results. */
export function bundleInfo(dir: string): Record<string, unknown> {
  const man = JSON.parse(readFileSync(path.join(dir, 'casa.json'), 'utf8')) as {
    name: string;
    fusion: string;
    image: { width: number; height: number; tokensPerFrame: number };
    decoder: { layers: number; kvHeads: number; headDim: number };
    context: { maxContextTokens: number };
  };
  const trained = existsSync(path.join(dir, 'eval.json'));
  return {
    dir: path.relative(process.cwd(), dir) || dir,
    name: man.name,
    fusion: man.fusion,
    image: `${man.image.width}x${man.image.height}`,
    imageTokensPerFrame: man.image.tokensPerFrame,
    layers: man.decoder.layers,
    kvBytesPerToken: 2 * man.decoder.layers * man.decoder.kvHeads * man.decoder.headDim * 4,
    maxContextTokens: man.context.maxContextTokens,
    weights: trained ? 'trained (has eval.json)' : 'random (dev bundle: timing only, captions are noise)',
  };
}

// ---------------------------------------------------------------------------------- /proc

/** Open file descriptors of this process. */
export function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1;
  }
}

/** Live child processes of `pid` (default: this process), by name. */
export function childProcesses(pid = process.pid): string[] {
  const out: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const fields = stat.slice(close + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(name);
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Whole-machine CPU counters (jiffies) from /proc/stat: busy and total. */
export function machineCpu(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** Busy share of the whole machine between two machineCpu() readings, in % of all cores. */
export function machineCpuPercent(a: ReturnType<typeof machineCpu>, b: ReturnType<typeof machineCpu>): number | null {
  if (!a || !b || b.total <= a.total) return null;
  return Math.round(((b.busy - a.busy) / (b.total - a.total)) * 1000) / 10;
}

// ---------------------------------------------------------------------------------- workers

/** A task for a worker: one of src/bench/tasks.ts, or a small control message. */
export type TaskMessage = (object & { kind: string }) | ({ kind: string } & Record<string, unknown>);

export interface WorkerMessage {
  id?: number;
  ok?: boolean;
  result?: unknown;
  error?: string;
  progress?: string;
}

/**
 * A measurement process (dist/bench/worker.js): each suite's measurements run in a fresh
 * process so that process memory, file descriptors and children are its own.
 */
export class WorkerHandle {
  readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;
  private stderr = '';
  readonly exitedPromise: Promise<void>;

  /** `script`: another build's bench worker (src/bench/other-build.ts); default this build's. */
  constructor(log: (line: string) => void, opts: { execArgv?: string[]; label?: string; script?: string } = {}) {
    const script = opts.script ?? path.join(packageRoot(), 'dist', 'bench', 'worker.js');
    if (!existsSync(script)) throw new Error(`${script} is missing: run "npm run build" first`);
    this.child = fork(script, [], {
      execArgv: opts.execArgv ?? ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-8000);
    });
    this.child.on('message', (m: WorkerMessage) => {
      if (m.progress !== undefined) {
        log(`${opts.label ? `[${opts.label}] ` : ''}${m.progress}`);
        return;
      }
      if (m.id === undefined) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error ?? 'worker task failed'));
    });
    this.exitedPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exited = true;
        for (const p of this.pending.values()) {
          p.reject(new Error(`bench worker exited (${signal ?? code}) during a task${this.stderr ? `: ${this.stderr.trim().slice(-2000)}` : ''}`));
        }
        this.pending.clear();
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  call<T>(task: TaskMessage): Promise<T> {
    if (this.exited) return Promise.reject(new Error('bench worker has exited'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, task });
    });
  }

  /** Ends the worker (asks it to exit; kills it after 5 s). */
  async close(): Promise<void> {
    if (this.exited) return;
    try {
      this.child.send({ id: 0, task: { kind: 'exit' } });
    } catch {
      /* channel closed */
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exitedPromise;
    clearTimeout(timer);
  }
}

/** Runs one task in a fresh worker (this build's, or `script`) and ends it. */
export async function inWorker<T>(log: (line: string) => void, label: string, task: TaskMessage, script?: string): Promise<T> {
  const w = new WorkerHandle(log, { label, ...(script ? { script } : {}) });
  try {
    return await w.call<T>(task);
  } finally {
    await w.close();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Formats a number for the summary: fixed decimals, "—" for missing. */
export function f(x: unknown, digits = 1): string {
  if (typeof x !== 'number' || !Number.isFinite(x)) return '—';
  return x.toFixed(digits);
}

/**
 * Long-stream harness (issue 3): runs a long synthetic stream, read from files, through
 * one caption session with a (small) context cap, and reports evictions, memory and the
 * caption accuracy of the last frames against the bundle's short-clip figures (eval.json).
 *
 * Inputs:
 *   frames.rgb   concatenated rgb24 frames at the model's size (W·H·3 bytes each);
 *                frames.rgb.gz (gzip) is read the same way, streamed
 *   truth.json   { "captions": string[] } — the ground-truth caption of every frame
 */
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import { InputError } from '../errors.js';
import { Model, type CaptionSession, type LoadOptions, type SessionOptions, type SessionStats } from '../engine.js';

export interface CaptionScore {
  frames: number;
  /** Fraction of frames whose caption equals the truth exactly (silent frames too). */
  frameExactMatch: number;
  /** Word-multiset F1, micro-averaged over frames. */
  tokenF1: number;
  precision: number;
  recall: number;
}

function wordCounts(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const w of text.split(/\s+/)) if (w) m.set(w, (m.get(w) ?? 0) + 1);
  return m;
}

/** The same scoring as tools/casa_model/evaluate.py `score` (unrounded). */
export function scoreCaptions(pairs: readonly (readonly [string, string])[]): CaptionScore {
  let exact = 0;
  let overlap = 0;
  let predN = 0;
  let trueN = 0;
  for (const [p, t] of pairs) {
    if (p === t) exact++;
    const pw = wordCounts(p);
    const tw = wordCounts(t);
    for (const [w, n] of pw) overlap += Math.min(n, tw.get(w) ?? 0);
    for (const n of pw.values()) predN += n;
    for (const n of tw.values()) trueN += n;
  }
  const precision = predN ? overlap / predN : 1;
  const recall = trueN ? overlap / trueN : 1;
  const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
  return { frames: pairs.length, frameExactMatch: exact / Math.max(1, pairs.length), tokenF1: f1, precision, recall };
}

export type ScoreMetric = 'frameExactMatch' | 'tokenF1';

export interface LongStreamOptions {
  /** Session settings; greedy (temperature 0) unless given. Set a small maxContextTokens to force evictions. */
  session?: SessionOptions;
  load?: LoadOptions;
  /** A model already loaded from the bundle (else loaded and released here). */
  model?: Model;
  /** Frames scored at the end of the stream (default 200). */
  lastFrames?: number;
  /** Short-clip reference figures (default <bundle>/eval.json). */
  evalPath?: string;
  /** Metrics compared with the reference (default both). */
  metrics?: ScoreMetric[];
  /** Allowed drop, in points (default 5). */
  tolerancePoints?: number;
  /** Process memory sampled every this many frames (default 100). */
  sampleEvery?: number;
  /** Stop after this many frames. */
  maxFrames?: number;
  onFrame?: (frame: number, caption: string, truth: string, stats: SessionStats) => void;
  /** Called before each memory sample (e.g. a forced garbage collection, for stable figures). */
  beforeSample?: () => void;
}

export interface MemorySample {
  frame: number;
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  kvBytes: number;
  kvTokens: number;
}

export interface LongStreamResult {
  bundle: string;
  frames: number;
  seconds: number;
  msPerFrame: number;
  cap: number;
  evictions: number;
  evictedTokens: number;
  maxKvTokens: number;
  kvCapacityBytes: number;
  /** kvBytes seen over the stream (bounded by the cap). */
  maxKvBytes: number;
  memory: MemorySample[];
  overall: CaptionScore;
  last: CaptionScore;
  /** eval.json figures, when present. */
  reference?: Partial<Record<ScoreMetric, number>>;
  /** reference − last, in points (×100), per compared metric. */
  dropPoints?: Partial<Record<ScoreMetric, number>>;
  /** Every compared metric of the last frames within tolerancePoints of the reference. */
  withinTolerance?: boolean;
  /** A few wrong captions of the last frames, for the report. */
  mistakes: { frame: number; predicted: string; truth: string }[];
}

/** Frames of `frameBytes` bytes from a raw (or .gz) file, streamed: memory stays at one chunk. */
export async function* readRawFrames(file: string, frameBytes: number): AsyncGenerator<Buffer> {
  const raw = createReadStream(file, { highWaterMark: Math.max(frameBytes, 1 << 16) });
  const input = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes < frameBytes) continue;
      let all = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes);
      let offset = 0;
      while (pendingBytes - offset >= frameBytes) {
        yield Buffer.from(all.subarray(offset, offset + frameBytes));
        offset += frameBytes;
      }
      all = all.subarray(offset);
      pending = all.length ? [all] : [];
      pendingBytes = all.length;
    }
  } finally {
    raw.destroy();
  }
  if (pendingBytes !== 0) {
    throw new InputError(`${file}: ends with ${pendingBytes} bytes, not a whole number of ${frameBytes}-byte rgb24 frames`);
  }
}

export async function runLongStream(
  bundleDir: string,
  framesPath: string,
  truthPath: string,
  opts: LongStreamOptions = {},
): Promise<LongStreamResult> {
  const truth = readTruth(truthPath);
  const model = opts.model ?? (await Model.load(bundleDir, opts.load));
  try {
    const { width, height } = model.manifest.image;
    const frameBytes = width * height * 3;
    checkFramesFile(framesPath, frameBytes, `${width}x${height}`);
    const session = await model.openSession({ temperature: 0, ...opts.session });
    const started = performance.now();
    const run = await captionFrames(session, { framesPath, frameBytes, width, height, truth, truthPath }, opts);
    if (run.predicted.length < truth.length && opts.maxFrames === undefined) {
      throw new InputError(`${framesPath}: ${run.predicted.length} frames for ${truth.length} captions in ${truthPath}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const result = scoreRun(bundleDir, run, truth, seconds, session.options.maxContextTokens, opts.lastFrames ?? 200);
    compareWithEval(result, opts.evalPath ?? path.join(bundleDir, 'eval.json'), opts);
    return result;
  } finally {
    if (!opts.model) await model.release();
  }
}

/** The ground truth file: {"captions": string[]}. */
function readTruth(truthPath: string): string[] {
  const truthRaw = JSON.parse(readFileSync(truthPath, 'utf8')) as { captions?: unknown };
  if (!Array.isArray(truthRaw.captions) || !truthRaw.captions.every((c) => typeof c === 'string')) {
    throw new InputError(`${truthPath}: expected {"captions": string[]}`);
  }
  return truthRaw.captions as string[];
}

/** The frames file exists and (uncompressed) holds a whole number of frames. */
function checkFramesFile(framesPath: string, frameBytes: number, size: string): void {
  if (!existsSync(framesPath)) throw new InputError(`${framesPath}: file not found`);
  if (!framesPath.endsWith('.gz') && statSync(framesPath).size % frameBytes !== 0) {
    throw new InputError(`${framesPath}: ${statSync(framesPath).size} bytes is not a whole number of ${size} rgb24 frames`);
  }
}

/** What captioning the stream gave: each frame's caption, memory samples, KV peaks, the final stats. */
interface StreamRun {
  predicted: string[];
  memory: MemorySample[];
  maxKvTokens: number;
  maxKvBytes: number;
  finalStats: SessionStats;
}

interface StreamInput {
  framesPath: string;
  frameBytes: number;
  width: number;
  height: number;
  truth: string[];
  truthPath: string;
}

/** Captions every frame (up to the truth's length or maxFrames), sampling memory every sampleEvery frames; closes the session. */
async function captionFrames(session: CaptionSession, input: StreamInput, opts: LongStreamOptions): Promise<StreamRun> {
  const { framesPath, frameBytes, width, height, truth } = input;
  const limit = Math.min(truth.length, opts.maxFrames ?? Infinity);
  const fps = session.options.fps;
  const sampleEvery = opts.sampleEvery ?? 100;
  const run: Omit<StreamRun, 'finalStats'> = { predicted: [], memory: [], maxKvTokens: 0, maxKvBytes: 0 };
  const sample = (frame: number, st: SessionStats): void => {
    opts.beforeSample?.();
    const mem = process.memoryUsage();
    run.memory.push({ frame, rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, externalBytes: mem.external + mem.arrayBuffers, kvBytes: st.kvBytes, kvTokens: st.kvTokens });
  };
  let frames = 0;
  let finalStats: SessionStats;
  try {
    for await (const rgb of readRawFrames(framesPath, frameBytes)) {
      const i = frames;
      if (i >= limit) {
        if (opts.maxFrames === undefined) throw new InputError(`${input.truthPath}: ${truth.length} captions for more frames in ${framesPath}`);
        break;
      }
      const { caption } = await session.caption({ index: i, ptsSeconds: i / fps, receivedAt: Date.now(), width, height, rgb });
      frames++;
      run.predicted.push(caption.text);
      const st = session.stats();
      run.maxKvTokens = Math.max(run.maxKvTokens, st.kvTokens);
      run.maxKvBytes = Math.max(run.maxKvBytes, st.kvBytes);
      opts.onFrame?.(i, caption.text, truth[i] as string, st);
      if (i % sampleEvery === 0) sample(i, st);
    }
    if (frames > 0 && (frames - 1) % sampleEvery !== 0) sample(frames - 1, session.stats());
  } finally {
    finalStats = session.stats();
    session.close();
  }
  return { ...run, finalStats };
}

/** The run scored against the truth: over all frames and over the last `lastFrames`, with a few mistakes. */
function scoreRun(bundleDir: string, run: StreamRun, truth: string[], seconds: number, cap: number, lastFrames: number): LongStreamResult {
  const frames = run.predicted.length;
  const pairs = run.predicted.map((p, i) => [p, truth[i] as string] as const);
  const lastN = Math.min(lastFrames, pairs.length);
  const lastPairs = pairs.slice(pairs.length - lastN);
  return {
    bundle: bundleDir,
    frames,
    seconds,
    msPerFrame: (seconds * 1000) / Math.max(1, frames),
    cap,
    evictions: run.finalStats.evictions,
    evictedTokens: run.finalStats.evictedTokens,
    maxKvTokens: run.maxKvTokens,
    kvCapacityBytes: run.finalStats.kvCapacityBytes,
    maxKvBytes: run.maxKvBytes,
    memory: run.memory,
    overall: scoreCaptions(pairs),
    last: scoreCaptions(lastPairs),
    mistakes: lastPairs
      .map(([p, t], k) => ({ frame: pairs.length - lastN + k, predicted: p, truth: t }))
      .filter((m) => m.predicted !== m.truth)
      .slice(0, 10),
  };
}

/** With the bundle's eval.json: the reference figures, the drop of the last frames from them, within tolerance or not. */
function compareWithEval(result: LongStreamResult, evalPath: string, opts: LongStreamOptions): void {
  if (!existsSync(evalPath)) return;
  const ev = JSON.parse(readFileSync(evalPath, 'utf8')) as Record<string, unknown>;
  const metrics = opts.metrics ?? ['frameExactMatch', 'tokenF1'];
  const tol = opts.tolerancePoints ?? 5;
  const reference: Partial<Record<ScoreMetric, number>> = {};
  const drop: Partial<Record<ScoreMetric, number>> = {};
  let within = true;
  for (const m of metrics) {
    const ref = ev[m];
    if (typeof ref !== 'number') {
      within = false;
      continue;
    }
    reference[m] = ref;
    drop[m] = (ref - result.last[m]) * 100;
    if ((drop[m] as number) > tol) within = false;
  }
  result.reference = reference;
  result.dropPoints = drop;
  result.withinTolerance = within;
}

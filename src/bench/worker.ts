/**
 * Measurement process of `casa-live bench` (forked by src/bench/common.ts WorkerHandle).
 * It receives tasks over IPC ({id, task}), runs them with the public engine, pipeline and
 * server APIs, and answers {id, ok, result | error}; {progress} messages are log lines.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import { stringify } from 'yaml';
import { Model, type CaptionSession, type CaptionSessionLike } from '../engine.js';
import type { UnsequencedEvent } from '../events.js';
import { silentLogger, type Logger } from '../logger.js';
import { AsyncQueue, createCaptionPipeline, type CaptionPipeline, type CaptionPipelineHandle } from '../pipeline/index.js';
import { runServe, type ServeHandle } from '../server/index.js';
import { runEngineStreams, type EngineStreamsTask } from './engine-streams.js';
import { childProcesses, forcedGeneration, machineCpu, machineCpuPercent, openFds, sleep, widenFfmpegStarts } from './common.js';
import { frameAt, runEngineThroughput, runMatmul } from './engine-load.js';
import { runIngestTrial } from './ingest-load.js';
import { startLiveServer, stopLiveServer } from './live-server.js';
import { deliveryDelay, max, median, min, quantiles, round, roundAll, type Arrival } from './stats.js';
import type {
  ClusterNodeTask,
  EngineThroughputTask,
  FanoutClientsTask,
  FanoutMeasureResult,
  FanoutServerTask,
  IngestTrialTask,
  MatmulTask,
  PipelinesResult,
  PipelinesTask,
  SoakResult,
  SoakSample,
  SoakTask,
  StreamResult,
  StreamTask,
  ThroughputResult,
  ThroughputTask,
} from './tasks.js';

function progress(line: string): void {
  process.send?.({ progress: line });
}

// ------------------------------------------------------------------------------ B1: one long stream

async function runStream(t: StreamTask): Promise<StreamResult> {
  const all = readFileSync(t.framesPath);
  const l0 = performance.now();
  const model = await Model.load(t.bundle, { intraOpNumThreads: 1 });
  const loadMs = performance.now() - l0;
  const cap = t.cap === null ? Infinity : t.cap;
  const session = await model.openSession({ ...forcedGeneration(t.tokens), ...(cap !== undefined ? { maxContextTokens: cap } : {}) });
  const r = emptyStreamResult(model, loadMs);
  const started = performance.now();
  const cpu = new CpuSegments(r.cpuSegments);
  await streamFrames(t, all, session, r, cpu);
  if (r.frameMs.length % 100 !== 0) cpu.close(r.frameMs.length);
  const st = session.stats();
  r.frames = r.frameMs.length;
  r.evictions = st.evictions;
  r.sampledTokens = st.sampledTokens;
  r.graphRuns = st.graphRuns;
  r.ortMs = round(st.ortMs, 1);
  r.textTokensFed = st.textTokensFed;
  r.wallSeconds = round((performance.now() - started) / 1000, 2);
  session.close();
  await model.release();
  return r;
}

function emptyStreamResult(model: Model, loadMs: number): StreamResult {
  return {
    model: model.name,
    fusion: model.fusion,
    promptTokens: model.promptIds.length,
    loadMs: round(loadMs, 1),
    frames: 0,
    frameMs: [],
    kvBytes: [],
    kvCapacityBytes: [],
    kvTokens: [],
    rss: [[0, process.memoryUsage.rss()]],
    evictions: 0,
    sampledTokens: 0,
    graphRuns: 0,
    ortMs: 0,
    textTokensFed: 0,
    stoppedBecause: 'frames done',
    wallSeconds: 0,
    cpuSegments: [],
  };
}

/** Run segments: this process's CPU and the rest of the machine's, from one close() to the next. */
class CpuSegments {
  private seg = { own: process.cpuUsage(), machine: machineCpu(), at: performance.now() };
  private readonly cores = os.cpus().length;

  constructor(private readonly out: StreamResult['cpuSegments']) {}

  close(toFrame: number): void {
    const own = process.cpuUsage(this.seg.own);
    const machine = machineCpu();
    const wall = (performance.now() - this.seg.at) / 1000;
    const ownPercent = ((own.user + own.system) / 1e6 / wall) * 100;
    const busy = machineCpuPercent(this.seg.machine, machine);
    this.out.push({ toFrame, ownPercent: round(ownPercent, 1), othersPercent: busy === null ? null : round(Math.max(0, busy * this.cores - ownPercent), 1) });
    this.seg = { own: process.cpuUsage(), machine, at: performance.now() };
  }
}

/** Captions t.frames frames (and on, for an extended run, until it stops), recording each. */
async function streamFrames(t: StreamTask, all: Buffer, session: CaptionSession, r: StreamResult, cpu: CpuSegments): Promise<void> {
  let extendStart = 0;
  const limit = t.extend ? Math.max(t.frames, t.extend.maxFrames) : t.frames;
  for (let i = 0; i < limit; i++) {
    if (i >= t.frames) {
      if (!t.extend) break;
      if (i === t.frames) extendStart = performance.now();
      const stop = extensionStop(t.extend, r.frameMs, performance.now() - extendStart);
      if (stop !== undefined) {
        r.stoppedBecause = stop;
        break;
      }
      if (i === limit - 1) r.stoppedBecause = `frame limit (${limit}) reached`;
    }
    const frame = frameAt(all, i, t.width, t.height);
    const t0 = performance.now();
    await session.caption(frame);
    const st = recordStreamFrame(r, performance.now() - t0, session, i + 1, t.rssEvery);
    if ((i + 1) % 100 === 0) cpu.close(i + 1);
    if ((i + 1) % 250 === 0) {
      progress(`${r.model}: frame ${i + 1}, ${round(median(r.frameMs.slice(-20)), 1)} ms/frame, KV ${(st.kvBytes / 2 ** 20).toFixed(1)} MiB, RSS ${(process.memoryUsage.rss() / 2 ** 20).toFixed(0)} MiB`);
    }
  }
}

/** Why an extended run stops now (its frame time reached the target, or its budget is spent), or undefined. */
function extensionStop(ext: NonNullable<StreamTask['extend']>, frameMs: readonly number[], extendedForMs: number): string | undefined {
  const recent = median(frameMs.slice(-20));
  if (recent >= ext.untilMs) return `frame time reached ${ext.untilMs} ms (rolling median ${round(recent, 1)} ms)`;
  if (extendedForMs > ext.budgetMs) return `extension time budget (${Math.round(ext.budgetMs / 1000)} s) spent`;
  return undefined;
}

/** Records frame `n` (1-based): its time, the KV in use after it, RSS every rssEvery frames. */
function recordStreamFrame(r: StreamResult, ms: number, session: CaptionSession, n: number, rssEvery: number): ReturnType<CaptionSession['stats']> {
  r.frameMs.push(round(ms, 3));
  const st = session.stats();
  r.kvBytes.push(st.kvBytes);
  r.kvCapacityBytes.push(st.kvCapacityBytes);
  r.kvTokens.push(st.kvTokens);
  if (n % rssEvery === 0) r.rss.push([n, process.memoryUsage.rss()]);
  return st;
}

// ------------------------------------------------------------------------------ B2: engine throughput

async function runThroughput(t: ThroughputTask): Promise<ThroughputResult> {
  const all = readFileSync(t.framesPath);
  const l0 = performance.now();
  const model = await Model.load(t.bundle, { intraOpNumThreads: t.threads, interOpNumThreads: 1, ...(t.batch === false ? { batch: false as const } : {}) });
  const loadMs = performance.now() - l0;
  const opts = { ...forcedGeneration(t.tokens), maxContextTokens: Infinity };
  // Warm-up (not timed), as the reference does.
  const warm = await model.openSession(opts);
  for (let i = 0; i < t.warmup; i++) await warm.caption(frameAt(all, i, t.width, t.height));
  warm.close();
  const runs: ThroughputResult['runs'] = [];
  for (let rep = 0; rep < t.repeats; rep++) {
    const s = await model.openSession(opts);
    const before = s.stats();
    const frameMs: number[] = [];
    let tokens = 0;
    const start = performance.now();
    for (let i = 0; i < t.count; i++) {
      const t0 = performance.now();
      const res = await s.caption(frameAt(all, i, t.width, t.height));
      frameMs.push(performance.now() - t0);
      tokens += res.ids.length;
    }
    const seconds = (performance.now() - start) / 1000;
    const st = s.stats();
    runs.push({
      frames: t.count,
      seconds: round(seconds, 4),
      fps: round(t.count / seconds, 2),
      tokens,
      frameMs: roundAll(frameMs),
      kvTokens: st.kvTokens,
      ortMs: round(st.ortMs - before.ortMs, 1),
      graphRuns: st.graphRuns - before.graphRuns,
    });
    s.close();
    progress(`casa-live: run ${rep + 1}/${t.repeats}: ${round(t.count / seconds, 1)} frames/s`);
  }
  await model.release();
  return { loadMs: round(loadMs, 1), runs };
}

// ------------------------------------------------------------------------------ B3/B4: concurrent real-time pipelines

/** A frame the session took: its pts and arrival (Arrival, ms Date.now()), first token and caption times. */
interface FrameRecord extends Arrival {
  firstTokenAt?: number;
  captionAt?: number;
  latencyMs?: number;
}

/** One pipeline of a trial: the arrival, first token and caption time of each frame it took. */
interface TrialStream {
  pipeline: CaptionPipelineHandle;
  records: Map<number, FrameRecord>;
  consumed: Promise<void>;
}

async function runPipelines(t: PipelinesTask): Promise<PipelinesResult> {
  widenFfmpegStarts();
  const model = await Model.load(t.bundle, { intraOpNumThreads: 1, ...t.load });
  const errors: string[] = [];
  const logger = silentLogger();
  const streams: TrialStream[] = [];
  for (let i = 0; i < t.streams; i++) {
    streams.push(startTrialStream(t, { model, logger }, i, errors));
    if (t.streams > 1) await sleep(t.staggerMs / t.streams);
  }
  const pipelines = streams.map((s) => s.pipeline);
  // Start-up (ffmpeg children start a few at a time, src/ingest/start-queue.ts) is not what
  // is measured: the warm-up counts from the moment every stream has had its first frame.
  await waitForFirstFrames(streams, STARTUP_LIMIT_MS);
  await sleep(t.warmupS * 1000);
  const w = await measureWindow(pipelines, t.measureS);
  // Captions of frames that arrived inside the window may still be on their way.
  await sleep(t.graceS * 1000);
  await Promise.all(pipelines.map((p) => p.stop({ immediate: true })));
  await Promise.all(streams.map((s) => s.consumed));
  await sleep(200);
  const childrenAfterStop = childProcesses().filter((n) => n.startsWith('ffmpeg')).length;
  await model.release();

  const l = windowLatencies(streams, w.w0, w.w1);
  const droppedPerStream = w.stats1.map((s, i) => s.framesDropped - (w.stats0[i]?.framesDropped ?? 0));
  const dropped = droppedPerStream.reduce((a, b) => a + b, 0);
  const expected = Math.round(t.streams * t.fps * w.elapsed);
  const cq = quantiles(l.captionMs);
  const reasons = trialFailures(t, { uncaptioned: l.uncaptioned, p99: cq.p99, dropped, arrived: l.arrived, expected, errors: errors.length });
  return {
    streams: t.streams,
    pass: reasons.length === 0,
    reasons,
    measureSeconds: round(w.elapsed, 2),
    captionMs: cq,
    firstTokenMs: quantiles(l.firstTokenMs),
    engineLatencyMs: quantiles(l.engineMs),
    deliveryMs: quantiles(l.deliveryMs),
    liveToCaptionMs: quantiles(l.liveToCaptionMs),
    framesArrived: l.arrived,
    framesExpected: expected,
    framesCaptioned: l.arrived - l.uncaptioned,
    framesUncaptioned: l.uncaptioned,
    dropped,
    droppedPerStream,
    errors: errors.slice(0, 10),
    nodeCpuPercent: round(((w.cpu.user + w.cpu.system) / 1e6 / w.elapsed) * 100, 1),
    machineCpuPercent: machineCpuPercent(w.mcpu0, w.mcpu1),
    eventLoopDelayP99Ms: w.eventLoopDelayP99Ms,
    ffmpegChildren: w.ffmpegChildren,
    childrenAfterStop,
    samples: { captionMs: l.captionMs.map((x) => Math.round(x)), firstTokenMs: l.firstTokenMs.map((x) => Math.round(x)) },
  };
}

/** How long a trial waits for every stream's first frame before its warm-up starts anyway. */
const STARTUP_LIMIT_MS = 120_000;

async function waitForFirstFrames(streams: TrialStream[], limitMs: number): Promise<void> {
  const until = Date.now() + limitMs;
  while (Date.now() < until && streams.some((s) => s.records.size === 0)) await sleep(50);
}

/** Starts pipeline i of a trial on the shared model, recording each frame the session takes. */
function startTrialStream(t: PipelinesTask, shared: { model: Model; logger: Logger }, i: number, errors: string[]): TrialStream {
  const records = new Map<number, FrameRecord>();
  const pipeline = createCaptionPipeline({
    model: shared.model,
    input: t.clip.replace('{i}', String(i)),
    realtime: t.realtime ?? true,
    fps: t.fps,
    generation: { ...forcedGeneration(t.tokens, i + 1), tokenGranularity: 'piece' },
    logger: shared.logger,
    ...(t.decode ? { source: { decode: t.decode } } : {}),
    onFrame: (frame) => records.set(frame.index, { pts: frame.ptsSeconds, at: frame.receivedAt }),
  });
  return { pipeline, records, consumed: consumeTrialStream(pipeline, records, `stream ${i}`, errors) };
}

/** Reads a pipeline's events to the end: first token and caption times of each frame, errors. */
async function consumeTrialStream(p: CaptionPipelineHandle, records: Map<number, FrameRecord>, name: string, errors: string[]): Promise<void> {
  try {
    for await (const ev of p.events) {
      const now = Date.now();
      if (ev.type === 'token') {
        const r = records.get(ev.frame);
        if (r && r.firstTokenAt === undefined) r.firstTokenAt = now;
      } else if (ev.type === 'caption') {
        const r = records.get(ev.frame);
        if (r) {
          r.captionAt = now;
          r.latencyMs = ev.latencyMs;
        }
      } else if (ev.state === 'error') {
        errors.push(`${name}: ${ev.reason ?? 'error'}`);
      }
    }
  } catch (err) {
    errors.push(`${name}: ${(err as Error).message}`);
  }
}

/** The measured window: its bounds, the pipelines' counters at both ends, CPU and event-loop delay. */
async function measureWindow(pipelines: CaptionPipelineHandle[], measureS: number) {
  const ffmpegChildren = childProcesses().filter((n) => n.startsWith('ffmpeg')).length;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const stats0 = pipelines.map((p) => p.stats());
  const cpu0 = process.cpuUsage();
  const mcpu0 = machineCpu();
  const w0 = Date.now();
  const p0 = performance.now();
  await sleep(measureS * 1000);
  const w1 = Date.now();
  const elapsed = (performance.now() - p0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const mcpu1 = machineCpu();
  const stats1 = pipelines.map((p) => p.stats());
  loop.disable();
  return { ffmpegChildren, stats0, stats1, w0, w1, elapsed, cpu, mcpu0, mcpu1, eventLoopDelayP99Ms: round(loop.percentile(99) / 1e6, 2) };
}

/**
 * Latencies of the frames that arrived inside [w0, w1), and how many of them got no caption.
 * Besides frame→caption (from the frame's arrival out of ffmpeg), each frame's delivery delay
 * (stats.ts deliveryDelay: how much later than its stream's fastest frame it came out of
 * ffmpeg, which grows when a decoder waits for a core) and the two added: live→caption.
 */
function windowLatencies(streams: readonly TrialStream[], w0: number, w1: number) {
  const captionMs: number[] = [];
  const firstTokenMs: number[] = [];
  const engineMs: number[] = [];
  const deliveryMs: number[] = [];
  const liveToCaptionMs: number[] = [];
  let arrived = 0;
  let uncaptioned = 0;
  for (const { records } of streams) {
    const delay = deliveryDelay([...records.values()]);
    for (const r of records.values()) {
      if (r.at < w0 || r.at >= w1) continue;
      arrived++;
      const d = delay(r);
      deliveryMs.push(d);
      if (r.captionAt === undefined) {
        uncaptioned++;
        continue;
      }
      captionMs.push(r.captionAt - r.at);
      liveToCaptionMs.push(d + r.captionAt - r.at);
      if (r.latencyMs !== undefined) engineMs.push(r.latencyMs);
      if (r.firstTokenAt !== undefined) firstTokenMs.push(r.firstTokenAt - r.at);
    }
  }
  return { captionMs, firstTokenMs, engineMs, deliveryMs, liveToCaptionMs, arrived, uncaptioned };
}

/** Why a trial fails (none: it passes). */
function trialFailures(
  t: PipelinesTask,
  m: { uncaptioned: number; p99: number; dropped: number; arrived: number; expected: number; errors: number },
): string[] {
  const reasons: string[] = [];
  if (m.uncaptioned > 0) reasons.push(`${m.uncaptioned} frames of the window got no caption`);
  if (!(m.p99 <= t.latencyBudgetMs)) reasons.push(`p99 frame→caption ${m.p99} ms > ${t.latencyBudgetMs} ms`);
  if (m.dropped > 0) reasons.push(`${m.dropped} frames dropped`);
  if (m.arrived + m.dropped < m.expected - t.streams) reasons.push(`ingest fell behind real time: ${m.arrived + m.dropped} frames arrived of ${m.expected} expected`);
  if (m.errors) reasons.push(`${m.errors} stream errors`);
  return reasons;
}

// ------------------------------------------------------------------------------ B6: soak

async function runSoak(t: SoakTask): Promise<SoakResult> {
  const model = await Model.load(t.bundle, { intraOpNumThreads: 1 });
  const logger = silentLogger();
  await sleep(200);
  const baseline = { fds: openFds(), children: childProcesses() };
  const p = createCaptionPipeline({ model, input: t.clip, realtime: false, generation: forcedGeneration(t.tokens), logger });
  const session = await p.session;
  const cap = session.options.maxContextTokens;
  const started = performance.now();
  const stream = await soakStream(p, session, t, started);
  await p.stopped;
  const wallSeconds = (performance.now() - started) / 1000;
  const dropped = p.stats().framesDropped;
  await sleep(300);
  const after = { fds: openFds(), children: childProcesses() };
  const afterGc = memoryAfterFullGc();
  const restarts = await restartCycles(t, model, logger);
  await model.release();
  return {
    frames: stream.frames,
    streamSeconds: round(stream.streamSeconds, 1),
    wallSeconds: round(wallSeconds, 2),
    cap,
    maxKvTokens: stream.maxKvTokens,
    maxKvBytes: stream.maxKvBytes,
    droppedFrames: dropped,
    samples: stream.samples,
    baseline,
    duringChildren: stream.duringChildren,
    after,
    afterGc,
    restarts,
    errors: stream.errors,
  };
}

/**
 * Reads the soak stream to its end: KV peaks, and a sample (memory, KV, fds, children) every
 * t.sampleEvery captions; the warm-up ends with one full GC (when exposed) and a sample.
 */
async function soakStream(p: CaptionPipelineHandle, session: CaptionSessionLike, t: SoakTask, started: number) {
  const out = { frames: 0, streamSeconds: 0, maxKvTokens: 0, maxKvBytes: 0, samples: [] as SoakSample[], duringChildren: [] as number[], errors: [] as string[] };
  let warm = t.warmupFrames === undefined && t.warmupMinWallS === undefined;
  try {
    for await (const ev of p.events) {
      if (ev.type === 'status' && ev.state === 'error') out.errors.push(ev.reason ?? 'error');
      if (ev.type !== 'caption') continue;
      out.frames++;
      out.streamSeconds = ev.end;
      const st = session.stats();
      if (st.kvTokens > out.maxKvTokens) out.maxKvTokens = st.kvTokens;
      if (st.kvBytes > out.maxKvBytes) out.maxKvBytes = st.kvBytes;
      if (!warm && out.frames >= (t.warmupFrames ?? 0) && performance.now() - started >= (t.warmupMinWallS ?? 0) * 1000) {
        warm = true;
        (globalThis as { gc?: () => void }).gc?.();
        out.samples.push({ ...soakSample(out.frames, ev.end, started, st), warmupEnd: true });
      }
      if (out.frames % t.sampleEvery !== 0) continue;
      const sample = soakSample(out.frames, ev.end, started, st);
      out.duringChildren.push(sample.children);
      out.samples.push(sample);
      if (out.frames % (t.sampleEvery * 10) === 0) {
        progress(`soak: ${out.frames}/${t.expectFrames} frames (${(ev.end / 60).toFixed(0)} min of stream), RSS ${(sample.rssBytes / 2 ** 20).toFixed(0)} MiB, KV ${st.kvTokens} tokens`);
      }
    }
  } catch (err) {
    out.errors.push((err as Error).message);
  }
  return out;
}

function soakSample(frame: number, streamSeconds: number, started: number, st: ReturnType<CaptionSession['stats']>): SoakSample {
  const mem = process.memoryUsage();
  const children = childProcesses().length;
  return {
    frame,
    streamSeconds: round(streamSeconds, 1),
    wallSeconds: round((performance.now() - started) / 1000, 2),
    rssBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    externalBytes: mem.external,
    kvTokens: st.kvTokens,
    kvBytes: st.kvBytes,
    kvCapacityBytes: st.kvCapacityBytes,
    evictions: st.evictions,
    fds: openFds(),
    children,
  };
}

/** A full garbage collection (when node runs with --expose-gc): what the JavaScript heap really holds. */
function memoryAfterFullGc(): SoakResult['afterGc'] {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const m = process.memoryUsage();
  return gc ? { rssBytes: m.rss, heapUsedBytes: m.heapUsed, externalBytes: m.external } : null;
}

/** Short pipelines of 20 frames on the same model: fds and children left after each. */
async function restartCycles(t: SoakTask, model: Model, logger: Logger): Promise<SoakResult['restarts']> {
  const restarts: SoakResult['restarts'] = [];
  for (let c = 0; c < t.restartCycles; c++) {
    const q = createCaptionPipeline({ model, input: t.clip, realtime: false, maxFrames: 20, generation: forcedGeneration(t.tokens), logger });
    let n = 0;
    for await (const ev of q.events) if (ev.type === 'caption') n++;
    await q.stopped;
    await sleep(200);
    restarts.push({ frames: n, fds: openFds(), children: childProcesses() });
  }
  return restarts;
}

// ------------------------------------------------------------------------------ B5: WebSocket fan-out

const WORDS = ['a', 'small', 'blue', 'square', 'enters', 'from', 'the', 'left'];

function stamp(): string {
  return (performance.timeOrigin + performance.now()).toFixed(3);
}

/**
 * A scripted caption pipeline: every frameMs, `tokens` token events 1 ms apart, then the
 * frame's caption — each text ending with its emit time (" @<ms since epoch>"), which the
 * clients subtract from their receive time.
 */
function scriptedPipeline(tokens: number, frameMs: number): CaptionPipeline {
  const q = new AsyncQueue<UnsequencedEvent>();
  let frame = 0;
  let stopped = false;
  q.push({ type: 'status', state: 'live', lagMs: 0, droppedFrames: 0 });
  const tick = async (): Promise<void> => {
    const k = frame++;
    const pts = (k * frameMs) / 1000;
    for (let i = 0; i < tokens && !stopped; i++) {
      q.push({ type: 'token', frame: k, pts, text: ` ${WORDS[i % WORDS.length] ?? 'x'} @${stamp()}` });
      await sleep(1);
    }
    if (stopped) return;
    q.push({ type: 'caption', frame: k, start: pts, end: pts + frameMs / 1000, text: `a small blue square enters from the left @${stamp()}`, latencyMs: 12 });
  };
  const timer = setInterval(() => void tick(), frameMs);
  return {
    events: q,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      q.end();
    },
  };
}

let serve: ServeHandle | undefined;
const FANOUT_TOKEN = 'bench-viewer-token-0123456789abcdef';

/** Writes a serve config for the scripted pipeline into `dir` and runs the daemon on it. */
async function startScriptedServe(dir: string, fields: Record<string, unknown>, streams: string[], t: { tokensPerFrame: number; frameMs: number }): Promise<ServeHandle> {
  await mkdir(dir, { recursive: true });
  const input = path.join(dir, 'scripted-input.txt');
  await writeFile(input, 'the bench scripted pipeline ignores its input\n');
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    auth: { tokens: [FANOUT_TOKEN] },
    dataDir: path.join(dir, 'data'),
    log: { level: 'silent' },
    streams: streams.map((id) => ({ id, input })),
    ...fields,
  };
  const file = path.join(dir, 'casa-live.yaml');
  await writeFile(file, stringify(config));
  const handle = await runServe({ configPath: file, pipelineFactory: () => scriptedPipeline(t.tokensPerFrame, t.frameMs), logger: silentLogger() });
  await handle.ready;
  return handle;
}

async function startFanoutServer(t: FanoutServerTask): Promise<{ port: number; token: string; stream: string; fds: number }> {
  serve = await startScriptedServe(t.dir, { captionLog: { fsync: t.fsync }, limits: { maxClients: t.maxClients } }, ['fanout'], t);
  return { port: serve.port, token: FANOUT_TOKEN, stream: 'fanout', fds: openFds() };
}

/** B8: a cluster node; the suite kills its process to measure failovers. */
async function startClusterNode(t: ClusterNodeTask): Promise<{ port: number; token: string; pid: number }> {
  const cluster = { redis: t.redisUrl, nodeId: t.nodeId, leaseMs: t.leaseMs, ...(t.renewEveryMs ? { renewEveryMs: t.renewEveryMs } : {}) };
  serve = await startScriptedServe(t.dir, { captionLog: { fsync: false }, limits: { maxClients: t.maxClients }, cluster }, t.streams, t);
  return { port: serve.port, token: FANOUT_TOKEN, pid: process.pid };
}

let clients: WebSocket[] = [];
let measuring = false;
let captionLat: number[] = [];
let tokenLat: number[] = [];
let captionCounts: number[] = [];
let closedClients = 0;
let ports: number[] = [];
let captionLatByPort: number[][] = [];

async function connectClients(t: FanoutClientsTask): Promise<{ connected: number; seconds: number }> {
  const started = performance.now();
  ports = t.ports ?? [t.port];
  const url = (i: number): string => `ws://127.0.0.1:${ports[i % ports.length]}/v1/ws?token=${encodeURIComponent(t.token)}`;
  captionCounts = new Array<number>(t.clients).fill(0);
  let next = 0;
  const workers = Array.from({ length: Math.min(t.concurrency, t.clients) }, async () => {
    while (next < t.clients) {
      const i = next++;
      await connectClient(url(i), t.stream, i);
    }
  });
  await Promise.all(workers);
  return { connected: clients.length, seconds: round((performance.now() - started) / 1000, 2) };
}

/** Connects client i and subscribes it; resolves once the server acknowledged the subscription. */
function connectClient(url: string, stream: string, i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let subscribed = false;
    ws.on('message', (data: WebSocket.RawData) => {
      const now = performance.timeOrigin + performance.now();
      const text = data.toString();
      if (subscribed) {
        recordDelivery(i, text, now);
      } else if (text.includes('"type":"subscribed"')) {
        subscribed = true;
        resolve();
      }
    });
    ws.once('open', () => ws.send(JSON.stringify({ type: 'subscribe', streams: [stream] })));
    ws.once('error', (err) => {
      if (!subscribed) reject(err);
    });
    ws.once('close', () => {
      closedClients++;
      if (!subscribed) reject(new Error('closed before subscribing'));
    });
    clients.push(ws);
  });
}

/** While measuring: the delivery latency of a token or caption (its text ends with its emit time). */
function recordDelivery(i: number, text: string, now: number): void {
  if (!measuring) return;
  const at = text.lastIndexOf(' @');
  if (at < 0) return;
  const sent = Number.parseFloat(text.slice(at + 2));
  if (!Number.isFinite(sent)) return;
  if (text.startsWith('{"type":"caption"')) {
    captionLat.push(now - sent);
    captionLatByPort[i % ports.length]?.push(now - sent);
    captionCounts[i] = (captionCounts[i] ?? 0) + 1;
  } else if (text.startsWith('{"type":"token"')) tokenLat.push(now - sent);
}

async function measureClients(seconds: number): Promise<FanoutMeasureResult> {
  captionLat = [];
  tokenLat = [];
  captionLatByPort = ports.map(() => []);
  captionCounts.fill(0);
  const cpu0 = process.cpuUsage();
  const p0 = performance.now();
  measuring = true;
  await sleep(seconds * 1000);
  measuring = false;
  const elapsed = (performance.now() - p0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    seconds: round(elapsed, 2),
    captionMs: roundAll(captionLat, 2),
    tokenMs: roundAll(tokenLat, 2),
    captionsPerClient: { min: min(captionCounts), max: max(captionCounts) },
    closedClients,
    clientCpuPercent: round(((cpu.user + cpu.system) / 1e6 / elapsed) * 100, 1),
    captionMsByPort: captionLatByPort.map((xs) => roundAll(xs, 2)),
  };
}

// ------------------------------------------------------------------------------ dispatch

type Task = { kind: string } & Record<string, unknown>;

/** Each task kind's handler (the worker's router: a table). */
const HANDLERS: Record<string, (task: Task) => unknown> = {
  stream: (t) => runStream(t as unknown as StreamTask),
  throughput: (t) => runThroughput(t as unknown as ThroughputTask),
  pipelines: (t) => runPipelines(t as unknown as PipelinesTask),
  soak: (t) => runSoak(t as unknown as SoakTask),
  'engine-streams': (t) => runEngineStreams(t as unknown as EngineStreamsTask),
  'engine-throughput': (t) => runEngineThroughput(t as unknown as EngineThroughputTask),
  matmul: (t) => runMatmul(t as unknown as MatmulTask),
  'ingest-trial': (t) => runIngestTrial(t as unknown as IngestTrialTask),
  'live-server': (t) => startLiveServer(t as unknown as { clip: string }),
  'live-server-stop': () => stopLiveServer(),
  'fanout-server': (t) => startFanoutServer(t as unknown as FanoutServerTask),
  'cluster-node': (t) => startClusterNode(t as unknown as ClusterNodeTask),
  'fanout-server-cpu': () => {
    const c = process.cpuUsage();
    return { cpuMicros: c.user + c.system, at: performance.now(), fds: openFds() };
  },
  'fanout-server-stop': async () => {
    await serve?.close();
    serve = undefined;
    return { fds: openFds() };
  },
  'fanout-clients': (t) => connectClients(t as unknown as FanoutClientsTask),
  'fanout-measure': (t) => measureClients(Number(t.seconds)),
  'fanout-clients-close': () => {
    for (const ws of clients) ws.terminate();
    clients = [];
    return { closed: true };
  },
};

async function handle(task: Task): Promise<unknown> {
  const handler = HANDLERS[task.kind];
  if (!handler) throw new Error(`unknown bench task ${task.kind}`);
  return handler(task);
}

process.on('message', (msg: { id: number; task: Task }) => {
  if (msg.task.kind === 'exit') {
    void (async () => {
      await serve?.close().catch(() => undefined);
      for (const ws of clients) ws.terminate();
      process.exit(0);
    })();
    return;
  }
  handle(msg.task).then(
    (result) => process.send?.({ id: msg.id, ok: true, result }),
    (err: unknown) => process.send?.({ id: msg.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));

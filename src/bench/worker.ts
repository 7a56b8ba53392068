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
import { Model, type EngineFrame, type CaptionSession } from '../engine.js';
import type { UnsequencedEvent } from '../events.js';
import { silentLogger } from '../logger.js';
import { createCaptionPipeline, type CaptionPipelineHandle } from '../pipeline/index.js';
import { AsyncQueue } from '../pipeline/queue.js';
import type { CaptionPipeline } from '../pipeline-types.js';
import { runServe, type ServeHandle } from '../server/index.js';
import { runEngineStreams, type EngineStreamsTask } from './engine-streams.js';
import { childProcesses, forcedGeneration, machineCpu, machineCpuPercent, openFds, sleep } from './common.js';
import { max, median, min, quantiles, round, roundAll } from './stats.js';
import type {
  FanoutClientsTask,
  FanoutMeasureResult,
  FanoutServerTask,
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

function frameAt(all: Buffer, i: number, w: number, h: number): EngineFrame {
  const bytes = w * h * 3;
  const count = Math.floor(all.length / bytes);
  const k = i % count;
  return { index: i, ptsSeconds: i / 2, receivedAt: Date.now(), width: w, height: h, rgb: all.subarray(k * bytes, (k + 1) * bytes) };
}

// ------------------------------------------------------------------------------ B1: one long stream

async function runStream(t: StreamTask): Promise<StreamResult> {
  const all = readFileSync(t.framesPath);
  const l0 = performance.now();
  const model = await Model.load(t.bundle, { intraOpNumThreads: 1 });
  const loadMs = performance.now() - l0;
  const cap = t.cap === null ? Infinity : t.cap;
  const session = await model.openSession({ ...forcedGeneration(t.tokens), ...(cap !== undefined ? { maxContextTokens: cap } : {}) });
  const r: StreamResult = {
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
  const started = performance.now();
  let seg = { own: process.cpuUsage(), machine: machineCpu(), at: performance.now() };
  const cores = os.cpus().length;
  const closeSegment = (toFrame: number): void => {
    const own = process.cpuUsage(seg.own);
    const machine = machineCpu();
    const wall = (performance.now() - seg.at) / 1000;
    const ownPercent = ((own.user + own.system) / 1e6 / wall) * 100;
    const busy = machineCpuPercent(seg.machine, machine);
    r.cpuSegments.push({ toFrame, ownPercent: round(ownPercent, 1), othersPercent: busy === null ? null : round(Math.max(0, busy * cores - ownPercent), 1) });
    seg = { own: process.cpuUsage(), machine, at: performance.now() };
  };
  let extendStart = 0;
  const limit = t.extend ? Math.max(t.frames, t.extend.maxFrames) : t.frames;
  for (let i = 0; i < limit; i++) {
    if (i >= t.frames) {
      const ext = t.extend;
      if (!ext) break;
      if (i === t.frames) extendStart = performance.now();
      const recent = median(r.frameMs.slice(-20));
      if (recent >= ext.untilMs) {
        r.stoppedBecause = `frame time reached ${ext.untilMs} ms (rolling median ${round(recent, 1)} ms)`;
        break;
      }
      if (performance.now() - extendStart > ext.budgetMs) {
        r.stoppedBecause = `extension time budget (${Math.round(ext.budgetMs / 1000)} s) spent`;
        break;
      }
      if (i === limit - 1) r.stoppedBecause = `frame limit (${limit}) reached`;
    }
    const frame = frameAt(all, i, t.width, t.height);
    const t0 = performance.now();
    await session.caption(frame);
    r.frameMs.push(round(performance.now() - t0, 3));
    const st = session.stats();
    r.kvBytes.push(st.kvBytes);
    r.kvCapacityBytes.push(st.kvCapacityBytes);
    r.kvTokens.push(st.kvTokens);
    if ((i + 1) % t.rssEvery === 0) r.rss.push([i + 1, process.memoryUsage.rss()]);
    if ((i + 1) % 100 === 0) closeSegment(i + 1);
    if ((i + 1) % 250 === 0) {
      progress(`${model.name}: frame ${i + 1}, ${round(median(r.frameMs.slice(-20)), 1)} ms/frame, KV ${(st.kvBytes / 2 ** 20).toFixed(1)} MiB, RSS ${(process.memoryUsage.rss() / 2 ** 20).toFixed(0)} MiB`);
    }
  }
  if (r.frameMs.length % 100 !== 0) closeSegment(r.frameMs.length);
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

// ------------------------------------------------------------------------------ B2: engine throughput

async function runThroughput(t: ThroughputTask): Promise<ThroughputResult> {
  const all = readFileSync(t.framesPath);
  const l0 = performance.now();
  const model = await Model.load(t.bundle, { intraOpNumThreads: t.threads, interOpNumThreads: 1 });
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

/** The model, with each session's captionFrame reporting the frame it gets (for arrival times). */
function instrument(model: Model, onFrame: (frame: EngineFrame) => void): Model {
  return new Proxy(model, {
    get(target, prop) {
      if (prop === 'openSession') {
        return async (...args: Parameters<Model['openSession']>): Promise<CaptionSession> => {
          const s = await target.openSession(...args);
          const orig = s.captionFrame.bind(s);
          Object.defineProperty(s, 'captionFrame', {
            value: (frame: EngineFrame) => {
              onFrame(frame);
              return orig(frame);
            },
          });
          return s;
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

interface FrameRecord {
  arrivedAt: number;
  firstTokenAt?: number;
  captionAt?: number;
  latencyMs?: number;
}

async function runPipelines(t: PipelinesTask): Promise<PipelinesResult> {
  const model = await Model.load(t.bundle, { intraOpNumThreads: 1 });
  const records: Array<Map<number, FrameRecord>> = [];
  const pipelines: CaptionPipelineHandle[] = [];
  const consumers: Promise<void>[] = [];
  const errors: string[] = [];
  const logger = silentLogger();
  for (let i = 0; i < t.streams; i++) {
    const recs = new Map<number, FrameRecord>();
    records.push(recs);
    const m = instrument(model, (frame) => recs.set(frame.index, { arrivedAt: frame.receivedAt }));
    const p = createCaptionPipeline({
      model: m,
      input: t.clip,
      realtime: true,
      fps: t.fps,
      generation: { ...forcedGeneration(t.tokens, i + 1), tokenGranularity: 'piece' },
      logger,
    });
    pipelines.push(p);
    consumers.push(
      (async () => {
        try {
          for await (const ev of p.events) {
            const now = Date.now();
            if (ev.type === 'token') {
              const r = recs.get(ev.frame);
              if (r && r.firstTokenAt === undefined) r.firstTokenAt = now;
            } else if (ev.type === 'caption') {
              const r = recs.get(ev.frame);
              if (r) {
                r.captionAt = now;
                r.latencyMs = ev.latencyMs;
              }
            } else if (ev.state === 'error') {
              errors.push(`stream ${i}: ${ev.reason ?? 'error'}`);
            }
          }
        } catch (err) {
          errors.push(`stream ${i}: ${(err as Error).message}`);
        }
      })(),
    );
    if (t.streams > 1) await sleep(t.staggerMs / t.streams);
  }
  await sleep(t.warmupS * 1000);
  const ffmpegChildren = childProcesses().filter((n) => n.startsWith('ffmpeg')).length;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const stats0 = pipelines.map((p) => p.stats());
  const cpu0 = process.cpuUsage();
  const mcpu0 = machineCpu();
  const w0 = Date.now();
  const p0 = performance.now();
  await sleep(t.measureS * 1000);
  const w1 = Date.now();
  const elapsed = (performance.now() - p0) / 1000;
  const cpu1 = process.cpuUsage(cpu0);
  const mcpu1 = machineCpu();
  const stats1 = pipelines.map((p) => p.stats());
  loop.disable();
  // Captions of frames that arrived inside the window may still be on their way.
  await sleep(t.graceS * 1000);
  await Promise.all(pipelines.map((p) => p.stop({ immediate: true })));
  await Promise.all(consumers);
  await sleep(200);
  const childrenAfterStop = childProcesses().filter((n) => n.startsWith('ffmpeg')).length;
  await model.release();

  const captionMs: number[] = [];
  const firstTokenMs: number[] = [];
  const engineMs: number[] = [];
  let arrived = 0;
  let uncaptioned = 0;
  for (const recs of records) {
    for (const r of recs.values()) {
      if (r.arrivedAt < w0 || r.arrivedAt >= w1) continue;
      arrived++;
      if (r.captionAt === undefined) {
        uncaptioned++;
        continue;
      }
      captionMs.push(r.captionAt - r.arrivedAt);
      if (r.latencyMs !== undefined) engineMs.push(r.latencyMs);
      if (r.firstTokenAt !== undefined) firstTokenMs.push(r.firstTokenAt - r.arrivedAt);
    }
  }
  const droppedPerStream = stats1.map((s, i) => s.framesDropped - (stats0[i]?.framesDropped ?? 0));
  const dropped = droppedPerStream.reduce((a, b) => a + b, 0);
  const expected = Math.round(t.streams * t.fps * elapsed);
  const cq = quantiles(captionMs);
  const reasons: string[] = [];
  if (uncaptioned > 0) reasons.push(`${uncaptioned} frames of the window got no caption`);
  if (!(cq.p99 <= t.latencyBudgetMs)) reasons.push(`p99 frame→caption ${cq.p99} ms > ${t.latencyBudgetMs} ms`);
  if (dropped > 0) reasons.push(`${dropped} frames dropped`);
  if (arrived + dropped < expected - t.streams) reasons.push(`ingest fell behind real time: ${arrived + dropped} frames arrived of ${expected} expected`);
  if (errors.length) reasons.push(`${errors.length} stream errors`);
  return {
    streams: t.streams,
    pass: reasons.length === 0,
    reasons,
    measureSeconds: round(elapsed, 2),
    captionMs: cq,
    firstTokenMs: quantiles(firstTokenMs),
    engineLatencyMs: quantiles(engineMs),
    framesArrived: arrived,
    framesExpected: expected,
    framesCaptioned: arrived - uncaptioned,
    framesUncaptioned: uncaptioned,
    dropped,
    droppedPerStream,
    errors: errors.slice(0, 10),
    nodeCpuPercent: round(((cpu1.user + cpu1.system) / 1e6 / elapsed) * 100, 1),
    machineCpuPercent: machineCpuPercent(mcpu0, mcpu1),
    eventLoopDelayP99Ms: round(loop.percentile(99) / 1e6, 2),
    ffmpegChildren,
    childrenAfterStop,
    samples: { captionMs: captionMs.map((x) => Math.round(x)), firstTokenMs: firstTokenMs.map((x) => Math.round(x)) },
  };
}

// ------------------------------------------------------------------------------ B6: soak

async function runSoak(t: SoakTask): Promise<SoakResult> {
  const model = await Model.load(t.bundle, { intraOpNumThreads: 1 });
  const logger = silentLogger();
  await sleep(200);
  const baseline = { fds: openFds(), children: childProcesses() };
  const errors: string[] = [];
  const samples: SoakSample[] = [];
  const duringChildren: number[] = [];
  const p = createCaptionPipeline({ model, input: t.clip, realtime: false, generation: forcedGeneration(t.tokens), logger });
  const session = await p.session;
  const cap = session.options.maxContextTokens;
  let frames = 0;
  let streamSeconds = 0;
  let maxKvTokens = 0;
  let maxKvBytes = 0;
  const started = performance.now();
  try {
    for await (const ev of p.events) {
      if (ev.type === 'status' && ev.state === 'error') errors.push(ev.reason ?? 'error');
      if (ev.type !== 'caption') continue;
      frames++;
      streamSeconds = ev.end;
      const st = session.stats();
      if (st.kvTokens > maxKvTokens) maxKvTokens = st.kvTokens;
      if (st.kvBytes > maxKvBytes) maxKvBytes = st.kvBytes;
      if (frames % t.sampleEvery === 0) {
        const mem = process.memoryUsage();
        const kids = childProcesses().length;
        duringChildren.push(kids);
        samples.push({
          frame: frames,
          streamSeconds: round(ev.end, 1),
          wallSeconds: round((performance.now() - started) / 1000, 2),
          rssBytes: mem.rss,
          heapUsedBytes: mem.heapUsed,
          externalBytes: mem.external,
          kvTokens: st.kvTokens,
          kvBytes: st.kvBytes,
          kvCapacityBytes: st.kvCapacityBytes,
          evictions: st.evictions,
          fds: openFds(),
          children: kids,
        });
        if (frames % (t.sampleEvery * 10) === 0) {
          progress(`soak: ${frames}/${t.expectFrames} frames (${(ev.end / 60).toFixed(0)} min of stream), RSS ${(mem.rss / 2 ** 20).toFixed(0)} MiB, KV ${st.kvTokens} tokens`);
        }
      }
    }
  } catch (err) {
    errors.push((err as Error).message);
  }
  await p.stopped;
  const wallSeconds = (performance.now() - started) / 1000;
  const dropped = p.stats().framesDropped;
  await sleep(300);
  const after = { fds: openFds(), children: childProcesses() };
  // A full garbage collection at the end: what the JavaScript heap really holds.
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const m = process.memoryUsage();
  const afterGc = gc ? { rssBytes: m.rss, heapUsedBytes: m.heapUsed, externalBytes: m.external } : null;
  const restarts: SoakResult['restarts'] = [];
  for (let c = 0; c < t.restartCycles; c++) {
    const q = createCaptionPipeline({ model, input: t.clip, realtime: false, maxFrames: 20, generation: forcedGeneration(t.tokens), logger });
    let n = 0;
    for await (const ev of q.events) if (ev.type === 'caption') n++;
    await q.stopped;
    await sleep(200);
    restarts.push({ frames: n, fds: openFds(), children: childProcesses() });
  }
  await model.release();
  return {
    frames,
    streamSeconds: round(streamSeconds, 1),
    wallSeconds: round(wallSeconds, 2),
    cap,
    maxKvTokens,
    maxKvBytes,
    droppedFrames: dropped,
    samples,
    baseline,
    duringChildren,
    after,
    afterGc,
    restarts,
    errors,
  };
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

async function startFanoutServer(t: FanoutServerTask): Promise<{ port: number; token: string; stream: string; fds: number }> {
  await mkdir(t.dir, { recursive: true });
  const input = path.join(t.dir, 'scripted-input.txt');
  await writeFile(input, 'the bench scripted pipeline ignores its input\n');
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    auth: { tokens: [FANOUT_TOKEN] },
    dataDir: path.join(t.dir, 'data'),
    log: { level: 'silent' },
    captionLog: { fsync: t.fsync },
    limits: { maxClients: t.maxClients },
    streams: [{ id: 'fanout', input }],
  };
  const file = path.join(t.dir, 'casa-live.yaml');
  await writeFile(file, stringify(config));
  serve = await runServe({ configPath: file, pipelineFactory: () => scriptedPipeline(t.tokensPerFrame, t.frameMs), logger: silentLogger() });
  await serve.ready;
  return { port: serve.port, token: FANOUT_TOKEN, stream: 'fanout', fds: openFds() };
}

let clients: WebSocket[] = [];
let measuring = false;
let captionLat: number[] = [];
let tokenLat: number[] = [];
let captionCounts: number[] = [];
let closedClients = 0;

async function connectClients(t: FanoutClientsTask): Promise<{ connected: number; seconds: number }> {
  const started = performance.now();
  const url = `ws://127.0.0.1:${t.port}/v1/ws?token=${encodeURIComponent(t.token)}`;
  captionCounts = new Array<number>(t.clients).fill(0);
  const connectOne = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      let subscribed = false;
      ws.on('message', (data: WebSocket.RawData) => {
        const now = performance.timeOrigin + performance.now();
        const text = data.toString();
        if (!subscribed) {
          if (text.includes('"type":"subscribed"')) {
            subscribed = true;
            resolve();
          }
          return;
        }
        if (!measuring) return;
        const at = text.lastIndexOf(' @');
        if (at < 0) return;
        const sent = Number.parseFloat(text.slice(at + 2));
        if (!Number.isFinite(sent)) return;
        if (text.startsWith('{"type":"caption"')) {
          captionLat.push(now - sent);
          captionCounts[i] = (captionCounts[i] ?? 0) + 1;
        } else if (text.startsWith('{"type":"token"')) tokenLat.push(now - sent);
      });
      ws.once('open', () => ws.send(JSON.stringify({ type: 'subscribe', streams: [t.stream] })));
      ws.once('error', (err) => {
        if (!subscribed) reject(err);
      });
      ws.once('close', () => {
        closedClients++;
        if (!subscribed) reject(new Error('closed before subscribing'));
      });
      clients.push(ws);
    });
  let next = 0;
  const workers = Array.from({ length: Math.min(t.concurrency, t.clients) }, async () => {
    while (next < t.clients) {
      const i = next++;
      await connectOne(i);
    }
  });
  await Promise.all(workers);
  return { connected: clients.length, seconds: round((performance.now() - started) / 1000, 2) };
}

async function measureClients(seconds: number): Promise<FanoutMeasureResult> {
  captionLat = [];
  tokenLat = [];
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
  };
}

// ------------------------------------------------------------------------------ dispatch

type Task = { kind: string } & Record<string, unknown>;

async function handle(task: Task): Promise<unknown> {
  switch (task.kind) {
    case 'stream':
      return runStream(task as unknown as StreamTask);
    case 'throughput':
      return runThroughput(task as unknown as ThroughputTask);
    case 'pipelines':
      return runPipelines(task as unknown as PipelinesTask);
    case 'soak':
      return runSoak(task as unknown as SoakTask);
    case 'engine-streams':
      return runEngineStreams(task as unknown as EngineStreamsTask);
    case 'fanout-server':
      return startFanoutServer(task as unknown as FanoutServerTask);
    case 'fanout-server-cpu': {
      const c = process.cpuUsage();
      return { cpuMicros: c.user + c.system, at: performance.now(), fds: openFds() };
    }
    case 'fanout-server-stop':
      await serve?.close();
      serve = undefined;
      return { fds: openFds() };
    case 'fanout-clients':
      return connectClients(task as unknown as FanoutClientsTask);
    case 'fanout-measure':
      return measureClients(Number(task.seconds));
    case 'fanout-clients-close':
      for (const ws of clients) ws.terminate();
      clients = [];
      return { closed: true };
    default:
      throw new Error(`unknown bench task ${task.kind}`);
  }
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

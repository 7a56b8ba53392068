/** Task and result shapes exchanged between the bench orchestrator and its worker processes. */
import type { Quantiles } from './stats.js';

export interface StreamTask {
  kind: 'stream';
  bundle: string;
  framesPath: string;
  width: number;
  height: number;
  /** Frames captioned (the frame file is looped when shorter). */
  frames: number;
  /** Context cap: a number, or null for unbounded (Infinity); undefined = the bundle's. */
  cap?: number | null;
  tokens: number;
  /** RSS sampled every this many frames. */
  rssEvery: number;
  /**
   * After `frames`, go on while the rolling median (20 frames) of the frame time stays
   * below `untilMs`, for at most `budgetMs` more wall time and `maxFrames` frames in all.
   */
  extend?: { untilMs: number; budgetMs: number; maxFrames: number };
}

export interface StreamResult {
  model: string;
  fusion: string;
  promptTokens: number;
  loadMs: number;
  frames: number;
  /** Wall time of each frame's captionFrame (ms). */
  frameMs: number[];
  /** After each frame: K/V bytes in use, allocated, and cache entries. */
  kvBytes: number[];
  kvCapacityBytes: number[];
  kvTokens: number[];
  /** [frame, RSS bytes]. */
  rss: Array<[number, number]>;
  evictions: number;
  sampledTokens: number;
  graphRuns: number;
  ortMs: number;
  textTokensFed: number;
  stoppedBecause: string;
  wallSeconds: number;
  /**
   * CPU use while the run lasted, per 100-frame segment: this process's, and everything
   * else's on the machine (in % of one core) — other processes make a segment's times noisy.
   */
  cpuSegments: Array<{ toFrame: number; ownPercent: number; othersPercent: number | null }>;
}

export interface ThroughputTask {
  kind: 'throughput';
  bundle: string;
  framesPath: string;
  width: number;
  height: number;
  count: number;
  repeats: number;
  warmup: number;
  tokens: number;
  threads: number;
  /** false: the unbatched engine, every graph run on the calling thread; absent: the default (batched) engine. */
  batch?: false;
}

/** One timed pass over a stream's frames (either runtime). */
export interface FrameRun {
  frames: number;
  seconds: number;
  fps: number;
  tokens: number;
  frameMs: number[];
  kvTokens: number;
}

export interface ThroughputRun extends FrameRun {
  ortMs: number;
  graphRuns: number;
}

export interface ThroughputResult {
  loadMs: number;
  runs: ThroughputRun[];
}

export interface PipelinesTask {
  kind: 'pipelines';
  bundle: string;
  /** The input; "{i}" is replaced by the stream's number (a live server URL). */
  clip: string;
  /** Read a file at native speed (-re); false for live inputs (default true). */
  realtime?: boolean;
  streams: number;
  /** Pipelines are started evenly over this span (one frame period: 500 ms at 2 fps). */
  staggerMs: number;
  warmupS: number;
  measureS: number;
  tokens: number;
  /** p99 frame→caption latency allowed (ms). */
  latencyBudgetMs: number;
  /** Wait after the window for the captions of its last frames. */
  graceS: number;
  fps: number;
  /** Engine load options (default: the engine's defaults, one intra-op thread). */
  load?: import('../model/bundle.js').LoadOptions;
  decode?: import('../ingest/index.js').DecodeOptions;
}

export interface PipelinesResult {
  streams: number;
  pass: boolean;
  reasons: string[];
  measureSeconds: number;
  /** Frame arrival (ingest) → caption event seen by the pipeline's consumer. */
  captionMs: Quantiles;
  /** Frame arrival → first token event seen by the consumer. */
  firstTokenMs: Quantiles;
  /** The engine's own latencyMs of the caption events. */
  engineLatencyMs: Quantiles;
  /** How much later than its stream's fastest frame each frame came out of ffmpeg (stats.ts deliveryDelay). */
  deliveryMs: Quantiles;
  /** Delivery delay + frame→caption: what a decoder's wait for a core adds shows here, not in captionMs. */
  liveToCaptionMs: Quantiles;
  framesArrived: number;
  framesExpected: number;
  framesCaptioned: number;
  framesUncaptioned: number;
  dropped: number;
  droppedPerStream: number[];
  errors: string[];
  nodeCpuPercent: number;
  machineCpuPercent: number | null;
  eventLoopDelayP99Ms: number;
  ffmpegChildren: number;
  childrenAfterStop: number;
  samples: { captionMs: number[]; firstTokenMs: number[] };
}

export interface SoakTask {
  kind: 'soak';
  bundle: string;
  clip: string;
  /** Frames in the clip at 2 fps. */
  expectFrames: number;
  sampleEvery: number;
  tokens: number;
  restartCycles: number;
  /** Warm-up: at least this many frames and this many seconds of wall time; it ends with one full GC. */
  warmupFrames?: number;
  warmupMinWallS?: number;
}

export interface SoakSample {
  frame: number;
  streamSeconds: number;
  wallSeconds: number;
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  kvTokens: number;
  kvBytes: number;
  kvCapacityBytes: number;
  evictions: number;
  fds: number;
  children: number;
  /** The sample taken right after the warm-up's full GC. */
  warmupEnd?: boolean;
}

export interface SoakResult {
  frames: number;
  streamSeconds: number;
  wallSeconds: number;
  cap: number;
  maxKvTokens: number;
  maxKvBytes: number;
  droppedFrames: number;
  samples: SoakSample[];
  baseline: { fds: number; children: string[] };
  duringChildren: number[];
  after: { fds: number; children: string[] };
  /** Memory after a forced full GC once the stream ended (null without --expose-gc). */
  afterGc: { rssBytes: number; heapUsedBytes: number; externalBytes: number } | null;
  restarts: Array<{ frames: number; fds: number; children: string[] }>;
  errors: string[];
}

export interface FanoutServerTask {
  kind: 'fanout-server';
  dir: string;
  maxClients: number;
  tokensPerFrame: number;
  frameMs: number;
  fsync: boolean;
}

/** B8: one cluster node (runServe with a cluster section and the scripted pipeline). */
export interface ClusterNodeTask {
  kind: 'cluster-node';
  dir: string;
  nodeId: string;
  redisUrl: string;
  /** Stream ids (the scripted pipeline ignores their input). */
  streams: string[];
  leaseMs: number;
  /** Absent: the default (leaseMs / 3). */
  renewEveryMs?: number;
  maxClients: number;
  tokensPerFrame: number;
  frameMs: number;
}

export interface FanoutClientsTask {
  kind: 'fanout-clients';
  port: number;
  /** B8: client i connects to ports[i % ports.length] (one port per node) instead of `port`. */
  ports?: number[];
  token: string;
  clients: number;
  stream: string;
  /** Connections opened at once. */
  concurrency: number;
}

export interface FanoutMeasureResult {
  seconds: number;
  /** Delivery latency (emit in the pipeline → message handler in the client), ms. */
  captionMs: number[];
  tokenMs: number[];
  captionsPerClient: { min: number; max: number };
  closedClients: number;
  clientCpuPercent: number;
  /** Caption deliveries per port (B8: per node), ms. */
  captionMsByPort: number[][];
}

/** B7: N sessions captioning back to back on one engine configuration. */
export interface EngineThroughputTask {
  kind: 'engine-throughput';
  bundle: string;
  framesPath: string;
  width: number;
  height: number;
  sessions: number;
  /** Name of the configuration (e.g. "batched") and its load options. */
  engine: string;
  load: import('../model/bundle.js').LoadOptions;
  tokens: number;
  warmupS: number;
  /** Longest warm-up while waiting for every session's first frame. */
  warmupLimitS: number;
  measureS: number;
  /** The window goes on until this many frames per session completed on average, at most maxMeasureS. */
  minFramesPerSession: number;
  maxMeasureS: number;
}

export interface EngineThroughputResult {
  engine: string;
  sessions: number;
  /** Frames completed inside the measured window. */
  frames: number;
  seconds: number;
  fps: number;
  tokensPerFrame: number;
  framesPerCpuSecond: number;
  /** This process's CPU (all its threads) and everything else's on the machine, % of one core. */
  processCpuPercent: number;
  othersCpuPercent: number | null;
  eventLoopDelayP99Ms: number;
  /** Mean self-attention cache length of the sessions (start and end of the window). */
  meanKvTokens: number;
  openSessionsMs: number;
  warmupSeconds: number;
  rssBytes: number;
  engineInfo: unknown;
  batch?: { decoderRuns: number; rowsPerDecoderRun: number; framesPerVisionRun: number; workerBusyShare: number; chainedSteps: number; chainedRolledBack: number };
}

/** B7: onnxruntime MatMul graphs timed back to back. */
export interface MatmulTask {
  kind: 'matmul';
  graphs: Array<{ path: string; m: number; k: number; n: number }>;
  threads: number[];
  seconds: number;
}

export interface MatmulResult {
  runs: Array<{ m: number; k: number; n: number; threads: number; runs: number; seconds: number; gflops: number }>;
}

/** B3: N frame sources as the pipelines open them, no model behind them. */
export interface IngestTrialTask {
  kind: 'ingest-trial';
  /** The input; "{i}" is replaced by the stream's number (a live server URL). */
  clip: string;
  /** Read a file at native speed (-re); false for live inputs. */
  realtime: boolean;
  streams: number;
  width: number;
  height: number;
  fps: number;
  staggerMs: number;
  warmupS: number;
  measureS: number;
  decode?: import('../ingest/index.js').DecodeOptions;
  /** Drift allowed: how much later frames may arrive at the end of the window than at its start, ms. */
  driftBudgetMs: number;
  /** pts of the first stream's first frames kept (to compare what decode options sample). */
  keepPts: number;
}

export interface IngestTrialResult {
  streams: number;
  pass: boolean;
  reasons: string[];
  measureSeconds: number;
  framesArrived: number;
  framesExpected: number;
  dropped: number;
  /** Spread of the frames' lateness (p99 − p50), ms: the delivery's jitter. */
  latenessP99Ms: number;
  /** Median lateness at the window's end less at its start, ms (see ingest-load.ts). */
  latenessDriftMs: number;
  ffmpegChildren: number;
  /** The ffmpeg children's CPU in the window, % of one core: all of them, and per child. */
  ffmpegCpuPercent: number;
  ffmpegCpuPercentPerStream: number;
  nodeCpuPercent: number;
  machineCpuPercent: number | null;
  errors: string[];
  sampledPts: number[];
}

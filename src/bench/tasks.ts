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
  clip: string;
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

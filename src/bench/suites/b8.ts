/**
 * B8 — cluster mode (docs/cluster.md): a real redis-server on 127.0.0.1 and bench worker
 * processes as cluster nodes (the real daemon, runServe with a cluster section, and B5's
 * scripted pipeline: 2 fps, 5 token events and a caption per frame, stamped with their emit time).
 *  (a) Failover: kill -9 the node holding the most streams, time from the kill to the first
 *      event of each of its streams written by another node (read from the streams' logs in
 *      Redis); a new node replaces the dead one and the cluster settles before the next kill.
 *  (b) Fan-out: viewers split over 2 nodes, all subscribed to one stream that one of them owns
 *      (every node serves it from the stream's log in Redis).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { BenchCluster, logMemory, timeFailover, waitSettled, type BenchNode, type FailoverSample, type NodeSetup } from '../cluster-bench.js';
import { machineCpu, machineCpuPercent, sleep, WorkerHandle, type SuiteOutput, type Target } from '../common.js';
import type { SuiteContext } from '../context.js';
import { BenchRedis, redisServerBinary } from '../redis-server.js';
import { histogram, max, percentile, quantiles, round, type Quantiles } from '../stats.js';
import type { FanoutMeasureResult } from '../tasks.js';

export interface B8Params {
  nodes: number;
  streams: number;
  kills: number;
  leaseMs: number;
  /** Ownership must hold still this long before a kill (no hand-over under way). */
  quietMs: number;
  viewers: number;
  viewerNodes: number;
  windows: number;
  windowS: number;
  /** Pause between the last subscription and the first window. */
  settleS: number;
  tokensPerFrame: number;
  frameMs: number;
}

export function b8Params(quick: boolean): B8Params {
  const common = { nodes: 3, viewerNodes: 2, settleS: 2, tokensPerFrame: 5, frameMs: 500 };
  return quick
    ? { ...common, streams: 3, kills: 3, leaseMs: 2000, quietMs: 1500, viewers: 100, windows: 1, windowS: 4 }
    : { ...common, streams: 6, kills: 10, leaseMs: 5000, quietMs: 3000, viewers: 1000, windows: 3, windowS: 15 };
}

/** Slack the issue allows on top of the lease for a dead node's streams to resume elsewhere. */
const FAILOVER_SLACK_MS = 5000;
const SETTLE_TIMEOUT_MS = 90_000;

interface KillResult extends FailoverSample {
  kill: number;
  victim: string;
}

async function redisClient(url: string): Promise<Redis> {
  const r = new Redis(url, { maxRetriesPerRequest: 2 });
  r.on('error', () => undefined);
  return r;
}

type LogMemory = Awaited<ReturnType<typeof logMemory>>;

/** (a): `p.kills` kills, each of the node holding the most streams, one sample per stream it held; then what the logs take in Redis. */
async function runFailovers(ctx: SuiteContext, p: B8Params, setup: NodeSetup): Promise<{ kills: KillResult[]; memory: LogMemory }> {
  const ids = setup.streams;
  const cluster = new BenchCluster(ctx, setup);
  const admin = await redisClient(setup.redisUrl);
  const reader = await redisClient(setup.redisUrl);
  const out: KillResult[] = [];
  try {
    for (let i = 0; i < p.nodes; i++) await cluster.add();
    for (let k = 1; k <= p.kills; k++) {
      const holders = await waitSettled(admin, ids, cluster.ids(), p.quietMs, SETTLE_TIMEOUT_MS);
      const held = (n: string): string[] => ids.filter((id) => holders.get(id) === n);
      const victim = cluster.nodes.reduce((a, b) => (held(b.id).length > held(a.id).length ? b : a));
      const samples = await timeFailover(reader, victim.id, held(victim.id), () => cluster.kill(victim), p.leaseMs + 30_000);
      await victim.worker.exitedPromise;
      for (const s of samples) out.push({ kill: k, victim: victim.id, ...s });
      ctx.log(`B8 kill ${k}/${p.kills} (${victim.id}): ${samples.map((s) => `${s.stream} → ${s.takenBy ?? 'nobody'} in ${s.ms === null ? '—' : `${round(s.ms / 1000, 2)} s`}`).join(', ')}`);
      await cluster.add();
    }
    return { kills: out, memory: await logMemory(admin, ids) };
  } finally {
    await cluster.close();
    admin.disconnect();
    reader.disconnect();
  }
}

interface NodeFanout {
  id: string;
  owner: boolean;
  captionMs: number[];
  cpuPercent: number[];
}

interface FanoutRun {
  connectSeconds: number;
  nodes: NodeFanout[];
  windows: Array<{ captionMs: Quantiles; tokenMs: Quantiles; machineCpuPercent: number | null; clientCpuPercent: number; captionsPerClient: { min: number; max: number }; closedClients: number }>;
  caption: number[];
  token: number[];
}

/** Appends `items` to `to` (push(...items) overflows the stack with a window's hundreds of thousands of token deliveries). */
function appendAll(to: number[], items: readonly number[]): void {
  for (const x of items) to.push(x);
}

/** One measuring window: every node's CPU around the viewers' measurement. */
async function fanoutWindow(cluster: BenchCluster, viewers: WorkerHandle, seconds: number, run: FanoutRun): Promise<void> {
  const cpu = (): Promise<Array<{ cpuMicros: number; at: number }>> => Promise.all(cluster.nodes.map((n) => n.worker.call<{ cpuMicros: number; at: number }>({ kind: 'fanout-server-cpu' })));
  const c0 = await cpu();
  const m0 = machineCpu();
  const m = await viewers.call<FanoutMeasureResult>({ kind: 'fanout-measure', seconds });
  const c1 = await cpu();
  const m1 = machineCpu();
  run.nodes.forEach((n, i) => {
    const a = c0[i] as { cpuMicros: number; at: number };
    const b = c1[i] as { cpuMicros: number; at: number };
    n.cpuPercent.push(round(((b.cpuMicros - a.cpuMicros) / 1e6 / ((b.at - a.at) / 1000)) * 100, 1));
    appendAll(n.captionMs, m.captionMsByPort[i] ?? []);
  });
  appendAll(run.caption, m.captionMs);
  appendAll(run.token, m.tokenMs);
  const captionMs = quantiles(m.captionMs);
  run.windows.push({ captionMs, tokenMs: quantiles(m.tokenMs), machineCpuPercent: machineCpuPercent(m0, m1), clientCpuPercent: m.clientCpuPercent, captionsPerClient: m.captionsPerClient, closedClients: m.closedClients });
}

/** (b): `p.viewers` viewers, client i on node i mod viewerNodes, all on the one stream. */
async function runFanout(ctx: SuiteContext, p: B8Params, setup: NodeSetup): Promise<FanoutRun> {
  const cluster = new BenchCluster(ctx, setup);
  const viewers = new WorkerHandle(ctx.log, { label: 'B8 viewers', execArgv: [] });
  const admin = await redisClient(setup.redisUrl);
  try {
    for (let i = 0; i < p.viewerNodes; i++) await cluster.add();
    const owner = (await waitSettled(admin, setup.streams, cluster.ids(), 1000, SETTLE_TIMEOUT_MS)).get(setup.streams[0] as string);
    const ports = cluster.nodes.map((n) => n.port);
    ctx.log(`B8 fan-out: connecting ${p.viewers} viewers to ${cluster.nodes.length} nodes (${owner} owns the stream)`);
    const c = await viewers.call<{ seconds: number }>({ kind: 'fanout-clients', port: ports[0], ports, token: (cluster.nodes[0] as BenchNode).token, clients: p.viewers, stream: setup.streams[0], concurrency: 50 });
    await sleep(p.settleS * 1000);
    const run: FanoutRun = { connectSeconds: c.seconds, nodes: cluster.nodes.map((n) => ({ id: n.id, owner: n.id === owner, captionMs: [], cpuPercent: [] })), windows: [], caption: [], token: [] };
    for (let w = 0; w < p.windows; w++) {
      await fanoutWindow(cluster, viewers, p.windowS, run);
      const last = run.windows.at(-1);
      ctx.log(`  window ${w + 1}: caption p99 ${last?.captionMs.p99} ms (p50 ${last?.captionMs.p50}); ${run.nodes.map((n) => `${n.id}${n.owner ? ' (owner)' : ''} CPU ${n.cpuPercent.at(-1)}%`).join(', ')}`);
    }
    await viewers.call({ kind: 'fanout-clients-close' });
    return run;
  } finally {
    await viewers.close();
    await cluster.close();
    admin.disconnect();
  }
}

/** The failover figures: quantiles over every stream moved, and per kill the slowest of its streams. */
function failoverFigures(samples: readonly KillResult[], p: B8Params): Record<string, unknown> {
  const ms = samples.flatMap((s) => (s.ms === null ? [] : [s.ms]));
  const perKill = Array.from({ length: p.kills }, (_, i) => {
    const of = samples.filter((s) => s.kill === i + 1);
    return of.some((s) => s.ms === null) ? null : round(max(of.map((s) => s.ms as number)), 1);
  });
  return {
    kills: p.kills,
    streamsMoved: samples.length,
    timedOut: samples.length - ms.length,
    p50Ms: round(percentile(ms, 50), 1),
    p90Ms: round(percentile(ms, 90), 1),
    maxMs: ms.length ? round(max(ms), 1) : null,
    leaseMs: p.leaseMs,
    targetMs: p.leaseMs + FAILOVER_SLACK_MS,
    perKillMaxMs: perKill,
    seqGaps: samples.filter((s) => s.seqGap !== 0).length,
  };
}

function fanoutFigures(run: FanoutRun): Record<string, unknown> {
  return {
    connectSeconds: run.connectSeconds,
    captionMs: quantiles(run.caption),
    tokenMs: quantiles(run.token),
    perWindowCaptionP99Ms: run.windows.map((w) => w.captionMs.p99),
    nodes: run.nodes.map((n) => ({ id: n.id, owner: n.owner, captionMs: quantiles(n.captionMs), cpuPercent: n.cpuPercent })),
    clientCpuPercent: run.windows.map((w) => w.clientCpuPercent),
    machineCpuPercent: run.windows.map((w) => w.machineCpuPercent),
    captionsPerClient: run.windows.map((w) => w.captionsPerClient),
    closedClients: run.windows.map((w) => w.closedClients),
  };
}

function b8Targets(p: B8Params, fo: Record<string, unknown>, fan: Record<string, unknown>): Target[] {
  const maxMs = fo.maxMs as number | null;
  const target = fo.targetMs as number;
  const failoverMet = maxMs !== null && fo.timedOut === 0 && maxMs <= target;
  const p99 = (fan.captionMs as Quantiles).p99;
  const fanoutMet = p99 <= 50;
  return [
    {
      name: `slowest failover over ${p.kills} kills -9 (leaseMs ${p.leaseMs})`,
      target: `≤ leaseMs + 5 s = ${target / 1000} s`,
      value: maxMs === null ? null : round(maxMs / 1000, 2),
      unit: 's',
      met: failoverMet,
      ...(failoverMet ? {} : { note: `${fo.timedOut} stream(s) were not resumed within leaseMs + 30 s; the node logs (B8 node-… lines) say why.` }),
    },
    { name: 'failover p50 / p90', target: '(reported)', value: `${round((fo.p50Ms as number) / 1000, 2)} / ${round((fo.p90Ms as number) / 1000, 2)} s`, met: null },
    { name: 'seq gaps at a failover (new owner\'s first seq − the log\'s last − 1 ≠ 0)', target: '0', value: fo.seqGaps as number, met: fo.seqGaps === 0 },
    {
      name: `p99 caption delivery latency, ${p.viewers} viewers over ${p.viewerNodes} nodes`,
      target: '≤ 50 ms (B5\'s target, one daemon)',
      value: p99,
      unit: 'ms',
      met: fanoutMet,
      ...(fanoutMet
        ? {}
        : { note: `Every node serves the stream from Redis (one blocking reader per node), then sends each event to each of its viewers on its one JavaScript thread; the viewers' process, both nodes and redis-server share ${os.cpus().length} cores. What would lift it: more cores per node, fewer viewers per node (more nodes).` }),
    },
  ];
}

export async function runB8(ctx: SuiteContext, params: B8Params = b8Params(ctx.opts.quick)): Promise<SuiteOutput> {
  const binary = redisServerBinary();
  if (!binary) return { config: { ...params }, results: {}, targets: [], notes: [], samples: {}, skipped: 'no redis-server (install Debian\'s redis-server, or set REDIS_SERVER to its path)' };
  const redis = await BenchRedis.start(binary);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'casa-bench-cluster-'));
  const base = { redisUrl: redis.url, leaseMs: params.leaseMs, maxClients: params.viewers + 100, tokensPerFrame: params.tokensPerFrame, frameMs: params.frameMs };
  try {
    ctx.log(`B8: redis-server on ${redis.url}; ${params.nodes} nodes, ${params.streams} streams, ${params.kills} kills (leaseMs ${params.leaseMs})`);
    const streams = Array.from({ length: params.streams }, (_, i) => `cam-${i + 1}`);
    const { kills, memory } = await runFailovers(ctx, params, { ...base, dir: path.join(dir, 'failover'), streams });
    const flush = await redisClient(redis.url);
    await flush.flushall();
    flush.disconnect();
    const fan = await runFanout(ctx, params, { ...base, dir: path.join(dir, 'fanout'), streams: ['fanout'] });
    return b8Output(params, kills, memory, fan);
  } finally {
    await redis.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function b8Output(p: B8Params, kills: KillResult[], memory: LogMemory, fan: FanoutRun): SuiteOutput {
  const failover = failoverFigures(kills, p);
  const fanout = fanoutFigures(fan);
  return {
    config: {
      ...p,
      renewEveryMs: Math.floor(p.leaseMs / 3),
      redis: 'Debian\'s redis-server on 127.0.0.1 (no persistence, maxmemory-policy noeviction), started and stopped by the suite',
      nodeProcesses: 'bench worker processes, each runServe (the real daemon) with a cluster section and a scripted pipeline (no model)',
    },
    results: { failover, fanout, redisLogMemory: memory },
    targets: b8Targets(p, failover, fanout),
    notes: [
      'Failover: before each kill the cluster has settled (every stream held by a running node, the nodes within one stream of each other, no change for quietMs); the victim is the node holding the most streams; the clock runs from kill(SIGKILL) to the moment the suite\'s blocking read of the stream\'s log in Redis returns the first entry written under another node\'s lease. A new node (a new node id) then replaces the dead one, and the cluster rebalances before the next kill.',
      `What a failover waits for: the dead node's leases expire (leaseMs after their last renewal, renewed every leaseMs / 3), another node sees it on its next tick (every leaseMs / 3) and claims, starts the stream's pipeline and writes its first event (seq continuing from the log's last).`,
      'redisLogMemory: after the kills, the event logs of the failover streams (XLEN, MEMORY USAGE … SAMPLES 0): Redis bytes per logged event (tokens, captions and statuses together), for sizing Redis (docs/cluster.md).',
      'Fan-out: every viewer receives every event; a delivery\'s latency runs from the event\'s emit time in the owner\'s pipeline (written into its text) through Redis (XADD by the owner, XREAD by each node) to the viewer\'s message handler; the viewers of the non-owner node get the events the same way as those of the owner.',
    ],
    samples: {
      failovers: kills,
      fanoutWindows: fan.windows,
      fanoutHistograms: fan.nodes.map((n) => ({ id: n.id, owner: n.owner, caption: histogram(n.captionMs, 0.1) })),
    },
  };
}

/**
 * B8's cluster: bench worker processes as cluster nodes (the real daemon, runServe with a
 * cluster section, and B5's scripted pipeline) sharing one redis-server; who owns what, read
 * from the leases in Redis; and the failover clock — from a node's kill -9 to the first event
 * of each of its streams that another node wrote in the stream's event log.
 */
import path from 'node:path';
import type { Redis } from 'ioredis';
import { clusterKeys, seqOfEntryId, type ClusterKeys } from '../cluster/keys.js';
import { DEFAULTS } from '../config/schema.js';
import { sleep, WorkerHandle } from './common.js';
import type { SuiteContext } from './context.js';
import { round } from './stats.js';
import type { ClusterNodeTask } from './tasks.js';

export const B8_KEYS: ClusterKeys = clusterKeys(DEFAULTS.cluster.keyPrefix);

export interface BenchNode {
  id: string;
  worker: WorkerHandle;
  port: number;
  /** A viewer token the node accepts. */
  token: string;
}

/** What every node of one B8 cluster runs with. */
export interface NodeSetup {
  redisUrl: string;
  dir: string;
  streams: string[];
  leaseMs: number;
  maxClients: number;
  tokensPerFrame: number;
  frameMs: number;
}

/** The nodes running now; each new node gets a new id (node-1, node-2, …), as a replacement machine would. */
export class BenchCluster {
  readonly nodes: BenchNode[] = [];
  private started = 0;

  constructor(
    private readonly ctx: SuiteContext,
    private readonly setup: NodeSetup,
  ) {}

  ids(): string[] {
    return this.nodes.map((n) => n.id);
  }

  /** Starts one more node; resolves once it listens (it joins the cluster and claims by itself). */
  async add(): Promise<BenchNode> {
    const id = `node-${++this.started}`;
    const worker = new WorkerHandle(this.ctx.log, { label: `B8 ${id}`, execArgv: [] });
    const s = this.setup;
    const task: ClusterNodeTask = {
      kind: 'cluster-node',
      dir: path.join(s.dir, id),
      nodeId: id,
      redisUrl: s.redisUrl,
      streams: s.streams,
      leaseMs: s.leaseMs,
      maxClients: s.maxClients,
      tokensPerFrame: s.tokensPerFrame,
      frameMs: s.frameMs,
    };
    try {
      const r = await worker.call<{ port: number; token: string }>(task);
      const node = { id, worker, port: r.port, token: r.token };
      this.nodes.push(node);
      return node;
    } catch (err) {
      await worker.close();
      throw err;
    }
  }

  /** kill -9 of the node's process; returns the moment of the kill (performance.now()). */
  kill(node: BenchNode): number {
    this.nodes.splice(this.nodes.indexOf(node), 1);
    const at = performance.now();
    process.kill(node.worker.pid, 'SIGKILL');
    return at;
  }

  /** Stops every node (gracefully: each hands its streams over and leaves). */
  async close(): Promise<void> {
    const all = this.nodes.splice(0);
    await Promise.all(all.map((n) => n.worker.close()));
  }
}

/** Stream id → the node holding its lease (streams without a lease are absent). */
export async function leaseHolders(redis: Redis, ids: readonly string[]): Promise<Map<string, string>> {
  const values = await redis.mget(...ids.map((id) => B8_KEYS.lease(id)));
  const out = new Map<string, string>();
  ids.forEach((id, i) => {
    const v = values[i];
    if (v) out.set(id, v.slice(0, v.lastIndexOf(':')));
  });
  return out;
}

/** Every stream held by a running node, the nodes within one stream of each other. */
function settled(holders: Map<string, string>, ids: readonly string[], live: readonly string[]): boolean {
  if (ids.some((id) => !live.includes(holders.get(id) ?? ''))) return false;
  const counts = live.map((n) => ids.filter((id) => holders.get(id) === n).length);
  return Math.max(...counts) - Math.min(...counts) <= 1;
}

/**
 * Waits until ownership is settled (see settled()) and has not changed for `quietMs` (no
 * hand-over under way); returns who holds what.
 */
export async function waitSettled(redis: Redis, ids: readonly string[], live: readonly string[], quietMs: number, timeoutMs: number): Promise<Map<string, string>> {
  const deadline = performance.now() + timeoutMs;
  let seen = '';
  let since = performance.now();
  for (;;) {
    const holders = await leaseHolders(redis, ids);
    const now = performance.now();
    const key = JSON.stringify([...holders]);
    if (key !== seen) {
      seen = key;
      since = now;
    }
    if (settled(holders, ids, live) && now - since >= quietMs) return holders;
    if (now > deadline) throw new Error(`B8: the cluster did not settle within ${Math.round(timeoutMs / 1000)} s (leases: ${key}; nodes: ${live.join(', ')})`);
    await sleep(100);
  }
}

export interface FailoverSample {
  stream: string;
  /** Kill → the first event of the stream written by another node (null: none before the timeout). */
  ms: number | null;
  takenBy: string | null;
  /** Seqs skipped between the log's previous entry and the new owner's first (0: gap-free). */
  seqGap: number | null;
}

type Entry = [id: string, fields: string[]];

/** The node of the lease an entry was written under (field `o`, "<node>:<epoch>"). */
function writerOf(fields: readonly string[]): string {
  const i = fields.indexOf('o');
  const lease = i >= 0 && i % 2 === 0 ? (fields[i + 1] ?? '') : '';
  return lease.slice(0, lease.lastIndexOf(':'));
}

interface Cursor {
  stream: string;
  last: string;
  prevSeq: number;
}

/**
 * Kills `victim` (through `kill`, which returns the moment) and follows the event logs of
 * `streams` (blocking reads from their last entries) until another node has written to each.
 */
export async function timeFailover(reader: Redis, victim: string, streams: readonly string[], kill: () => number, timeoutMs: number): Promise<FailoverSample[]> {
  const cursors = new Map<string, Cursor>();
  for (const stream of streams) {
    const [top] = (await reader.xrevrange(B8_KEYS.events(stream), '+', '-', 'COUNT', 1)) as Entry[];
    cursors.set(B8_KEYS.events(stream), { stream, last: top?.[0] ?? '0-0', prevSeq: top ? seqOfEntryId(top[0]) : 0 });
  }
  const found = new Map<string, FailoverSample>();
  const t0 = kill();
  while (found.size < streams.length && performance.now() - t0 < timeoutMs) {
    const open = [...cursors].filter(([, c]) => !found.has(c.stream));
    const reply = (await reader.xread('COUNT', 1000, 'BLOCK', 200, 'STREAMS', ...open.map(([k]) => k), ...open.map(([, c]) => c.last))) as Array<[string, Entry[]]> | null;
    const at = performance.now();
    for (const [key, entries] of reply ?? []) {
      const c = cursors.get(key) as Cursor;
      for (const [id, fields] of entries) {
        const seq = seqOfEntryId(id);
        const writer = writerOf(fields);
        if (writer !== victim && !found.has(c.stream)) found.set(c.stream, { stream: c.stream, ms: round(at - t0, 1), takenBy: writer, seqGap: seq - c.prevSeq - 1 });
        c.last = id;
        c.prevSeq = seq;
      }
    }
  }
  return streams.map((stream) => found.get(stream) ?? { stream, ms: null, takenBy: null, seqGap: null });
}

/** What the streams' event logs take in Redis (for sizing: bytes per entry, all event types together). */
export async function logMemory(redis: Redis, ids: readonly string[]): Promise<{ entries: number; bytes: number; bytesPerEntry: number | null }> {
  let entries = 0;
  let bytes = 0;
  for (const id of ids) {
    entries += await redis.xlen(B8_KEYS.events(id));
    bytes += Number((await redis.call('MEMORY', 'USAGE', B8_KEYS.events(id), 'SAMPLES', '0')) ?? 0);
  }
  return { entries, bytes, bytesPerEntry: entries > 0 ? round(bytes / entries, 1) : null };
}

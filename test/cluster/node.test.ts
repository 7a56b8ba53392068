// The cluster layer on a real redis-server, in this process: the fenced scripts, two nodes
// sharing streams by the spreading rule, a Redis restart (AOF) with events buffered and
// flushed in order, the buffer bound (oldest tokens first), and a lease that lapsed while
// Redis was away taken back with its held events. The streams here are a stand-in for the
// daemon's runners (FakeStreams: a timer that emits tokens and captions into the node's
// sink); the daemon itself, as processes, is in cluster.test.ts.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClusterNode, type OwnedStreamSink, type OwnershipHandler, type StopMode, type StreamRecord } from '../../src/cluster/index.js';
import { mayClaim, shouldShed } from '../../src/cluster/membership.js';
import { defineScripts } from '../../src/cluster/scripts.js';
import { clusterKeys } from '../../src/cluster/keys.js';
import { EventWriter } from '../../src/cluster/writer.js';
import { Redis } from 'ioredis';
import { DEFAULTS, type ClusterConfig, type StreamConfig } from '../../src/config/schema.js';
import type { StreamEvent } from '../../src/events.js';
import { silentLogger } from '../../src/logger.js';
import { createMetrics, type ClusterMetrics } from '../../src/metrics.js';
import { sleep, until } from '../server/helpers.js';
import { checkOneSequence, eventLog, leaseOwners, RedisServer } from './helpers.js';

function stream(id: string): StreamConfig {
  return { id, input: `rtsp://127.0.0.1:1/${id}`, model: 'm', fps: 2, generation: {}, enabled: true, restart: { ...DEFAULTS.restart } };
}

/** Stand-in for the daemon's runners: per owned stream, every `everyMs` three tokens and a caption into the sink. */
class FakeStreams implements OwnershipHandler {
  readonly running = new Map<string, { timer: NodeJS.Timeout; sink: OwnedStreamSink; seq: number }>();
  readonly starts: Array<{ id: string; startSeq: number }> = [];
  constructor(private readonly everyMs = 20) {}

  async start(record: StreamRecord, sink: OwnedStreamSink): Promise<void> {
    const id = record.config.id;
    this.starts.push({ id, startSeq: sink.startSeq });
    const run = { sink, seq: sink.startSeq, timer: setInterval(() => this.frame(id), this.everyMs) };
    this.running.set(id, run);
    this.emit(id, { type: 'status', state: 'live', lagMs: 0, droppedFrames: 0 });
  }

  async stop(id: string, mode: StopMode): Promise<void> {
    const run = this.running.get(id);
    if (!run) return;
    clearInterval(run.timer);
    if (mode.graceful) this.emit(id, { type: 'status', state: mode.final.state, reason: mode.final.reason, lagMs: 0, droppedFrames: 0 });
    this.running.delete(id);
  }

  async reconfigure(): Promise<void> {}

  private frame(id: string): void {
    for (let i = 0; i < 3; i++) this.emit(id, { type: 'token', frame: 0, pts: 0, text: `t${i}` });
    this.emit(id, { type: 'caption', frame: 0, start: 0, end: 0.5, text: `caption of ${id}`, latencyMs: 1 });
  }

  private emit(id: string, ev: Record<string, unknown>): void {
    const run = this.running.get(id)!;
    run.sink.append({ ...ev, stream: id, seq: ++run.seq } as StreamEvent);
  }
}

const nodes: ClusterNode[] = [];
let redis: RedisServer;

function clusterConfig(nodeId: string, over: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    redisUrl: redis.url,
    nodeId,
    maxStreams: 64,
    leaseMs: 800,
    renewEveryMs: 200,
    keyPrefix: 'casa-live',
    captionStream: { maxLen: 100_000 },
    bufferLimit: 100_000,
    archive: false,
    ...over,
  };
}

async function startNode(nodeId: string, streams: StreamConfig[], handler: OwnershipHandler, over: Partial<ClusterConfig> = {}): Promise<{ node: ClusterNode; metrics: ClusterMetrics }> {
  const metrics = createMetrics({ cluster: true, defaultMetrics: false }).cluster!;
  const node = await ClusterNode.start({
    config: clusterConfig(nodeId, over),
    logger: silentLogger(),
    metrics,
    handler,
    validate: (c) => c as StreamConfig,
    seed: streams,
    onRecords: () => undefined,
    onEvents: () => undefined,
    seenSeq: () => 0,
  });
  nodes.push(node);
  node.beginClaiming();
  return { node, metrics };
}

async function counter(c: { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> }, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await c.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0);
}

beforeAll(async () => {
  redis = await RedisServer.start({ appendfsync: 'always' });
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.leave().catch(() => undefined)));
  const c = redis.client();
  await c.flushall().catch(() => undefined);
  c.disconnect();
});
afterAll(async () => {
  await redis?.close();
});

describe('the spreading rule', () => {
  const n = (id: string, owned: number, accepting = true, maxStreams = 10) => ({ id, owned, maxStreams, accepting });
  it('claims while owning no more than the least-loaded node that takes streams', () => {
    expect(mayClaim(n('a', 2), [n('a', 2), n('b', 2), n('c', 3)])).toBe(true);
    expect(mayClaim(n('a', 3), [n('a', 3), n('b', 2)])).toBe(false);
    // Nodes that do not take streams (starting, leaving, full) do not hold the others back.
    expect(mayClaim(n('a', 3), [n('a', 3), n('b', 0, false), n('c', 1, true, 1)])).toBe(true);
    expect(mayClaim(n('a', 10), [n('a', 10)])).toBe(false);
  });
  it('hands over when two or more above a node that takes streams', () => {
    expect(shouldShed(n('a', 4), [n('a', 4), n('b', 3)])).toBe(false);
    expect(shouldShed(n('a', 4), [n('a', 4), n('b', 2)])).toBe(true);
    expect(shouldShed(n('a', 4), [n('a', 4), n('b', 0, false)])).toBe(false);
  });
});

describe('fenced scripts', () => {
  it('claim gives an epoch and the last seq; appends only under the current lease; a re-sent seq is a duplicate', async () => {
    const c = redis.client();
    defineScripts(c);
    const k = { lease: 'casa-live:lease:s', epoch: 'casa-live:epoch:s', events: 'casa-live:events:s' };
    expect(await c.casaClaim(k.lease, k.epoch, k.events, 'a', 60_000)).toEqual([1, 0, '']);
    expect(await c.casaClaim(k.lease, k.epoch, k.events, 'b', 60_000)).toBeNull(); // held
    expect(await c.casaAppend(k.lease, k.events, 'a:1', 1000, 1, '{"type":"status","seq":1}', 2, '{"type":"token","seq":2}')).toEqual([2, 0]);
    expect(await c.casaAppend(k.lease, k.events, 'a:1', 1000, 2, '{"type":"token","seq":2}', 3, '{"type":"caption","seq":3}')).toEqual([1, 1]);
    await c.del(k.lease);
    expect(await c.casaClaim(k.lease, k.epoch, k.events, 'b', 60_000)).toEqual([2, 3, 'a:1']); // continues from seq 3, last written under a:1
    expect(await c.casaAppend(k.lease, k.events, 'a:1', 1000, 4, '{"type":"caption","seq":4}')).toBe(-1); // fenced by epoch
    expect(await c.casaRenew(k.lease, 'a:1', 60_000)).toBe(-1);
    expect(await c.casaRelease(k.lease, 'a:1', 'casa-live:released', 's')).toBe(0);
    expect(await c.casaRenew(k.lease, 'b:2', 60_000)).toBe(1);
    expect(await c.casaRelease(k.lease, 'b:2', 'casa-live:released', 's')).toBe(1);
    expect(await c.casaRenew(k.lease, 'b:2', 60_000)).toBe(0); // gone
    expect(await c.xlen(k.events)).toBe(3);
    c.disconnect();
  });
});

describe('the event writer\'s bound (Redis unreachable)', () => {
  it('past bufferLimit drops the oldest tokens first; captions only when no token is left, counted', async () => {
    const unreachable = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null });
    unreachable.on('error', () => undefined);
    defineScripts(unreachable);
    const metrics = createMetrics({ cluster: true, defaultMetrics: false }).cluster!;
    const writer = new EventWriter(unreachable, clusterKeys('t'), { maxLen: 1000, bufferLimit: 100, logger: silentLogger(), metrics, onFenced: () => undefined });
    writer.open('s', 'a:1');
    let seq = 0;
    const frame = (): void => {
      for (let i = 0; i < 3; i++) writer.append('s', { type: 'token', stream: 's', seq: ++seq, frame: 0, pts: 0, text: 'x' });
      writer.append('s', { type: 'caption', stream: 's', seq: ++seq, frame: 0, start: 0, end: 1, text: 'c', latencyMs: 0 });
    };
    for (let f = 0; f < 50; f++) frame(); // 200 events, 50 captions
    expect(writer.buffered).toBeLessThanOrEqual(100);
    expect(await counter(metrics.bufferDropped, { kind: 'committed' })).toBe(0);
    expect(await counter(metrics.bufferDropped, { kind: 'token' })).toBe(200 - writer.buffered);
    for (let f = 0; f < 60; f++) frame(); // 110 captions now: more than the bound holds
    expect(writer.buffered).toBeLessThanOrEqual(100);
    expect(await counter(metrics.bufferDropped, { kind: 'committed' })).toBeGreaterThan(0);
    expect(await counter(metrics.bufferDropped)).toBe(440 - writer.buffered);
    writer.close();
    unreachable.disconnect();
  });
});

describe('cluster node', () => {
  it('claiming many streams that are slow to start outlasts the lease without losing the first ones (renewed meanwhile)', async () => {
    const ids = ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8'];
    // Each start takes 250 ms: the eight claims of one tick last 2 s, 2.5 leases of 800 ms.
    class SlowStarts extends FakeStreams {
      override async start(record: StreamRecord, sink: OwnedStreamSink): Promise<void> {
        await sleep(250);
        await super.start(record, sink);
      }
    }
    const slow = new SlowStarts();
    const { metrics } = await startNode('a', ids.map(stream), slow);
    await until(() => slow.running.size === ids.length, 15_000, 'every stream started');
    await sleep(1000);
    expect(await counter(metrics.leases, { event: 'lost' })).toBe(0);
    expect(slow.starts.map((s) => s.id).sort()).toEqual([...ids].sort()); // each started once
    const c = redis.client();
    expect((await leaseOwners(c, ids)).size).toBe(ids.length);
    c.disconnect();
  });

  it('two nodes split the streams within one of each other; one lease per stream; handed over on leave', async () => {
    const ids = ['s1', 's2', 's3', 's4', 's5'];
    const fa = new FakeStreams();
    const fb = new FakeStreams();
    const a = await startNode('a', ids.map(stream), fa);
    const b = await startNode('b', ids.map(stream), fb);
    const c = redis.client();
    await until(async () => (await leaseOwners(c, ids)).size === 5 && Math.abs(fa.running.size - fb.running.size) <= 1 && fa.running.size + fb.running.size === 5, 15_000, 'the streams spread');
    for (const id of ids) expect(fa.running.has(id) !== fb.running.has(id)).toBe(true);
    const owners = await leaseOwners(c, ids);
    for (const id of ids) expect(owners.get(id)).toBe(fa.running.has(id) ? 'a' : 'b');
    expect(a.node.status().nodes.map((n) => n.id).sort()).toEqual(['a', 'b']);

    // Graceful leave: b takes a's streams at once (the release is announced).
    const t0 = Date.now();
    await a.node.leave();
    nodes.splice(nodes.indexOf(a.node), 1);
    await until(() => fb.running.size === 5, 5000, 'b to take every stream');
    const tookMs = Date.now() - t0;
    for (const id of ids) {
      const log = await eventLog(c, id);
      expect(checkOneSequence(log)).toBeUndefined();
    }
    expect(await counter(a.metrics.leases, { event: 'released' })).toBeGreaterThan(0);
    c.disconnect();
    console.log(`leave → every stream on the other node in ${tookMs} ms`);
  });

  it('Redis restarted (AOF always, a crash): events are buffered, then written in order; nothing acknowledged is lost', async () => {
    const f = new FakeStreams(30);
    const { node } = await startNode('a', [stream('s1')], f, { leaseMs: 3000, renewEveryMs: 500 });
    const c = redis.client();
    await until(async () => (await eventLog(c, 's1')).filter((e) => e.type === 'caption').length >= 5, 10_000, 'captions in Redis');
    const before = await eventLog(c, 's1');
    c.disconnect();
    await redis.stop('SIGKILL');
    await until(() => node.status().degraded, 5000, 'the node to report degraded');
    await redis.run();
    const c2 = redis.client();
    await until(async () => !node.status().degraded && node.status().bufferedEvents === 0, 15_000, 'the node to recover and flush');
    await sleep(300);
    const after = await eventLog(c2, 's1');
    // Every event acknowledged before the crash is still there, unchanged.
    expect(after.slice(0, before.length)).toEqual(before);
    expect(after.length).toBeGreaterThan(before.length + 20);
    expect(checkOneSequence(after)).toBeUndefined();
    // The lease outlived the outage: still the first one, no restart of the stream.
    expect(new Set(after.map((e) => e.lease))).toEqual(new Set(['a:1']));
    expect(f.starts).toHaveLength(1);
    c2.disconnect();
  });

  it('Redis away longer than the lease: the stream stops; its held events are written when the node takes it back', async () => {
    const f = new FakeStreams(10);
    const { node, metrics } = await startNode('a', [stream('s1')], f, { leaseMs: 600, renewEveryMs: 150 });
    const c = redis.client();
    await until(async () => (await eventLog(c, 's1')).length >= 20, 10_000, 'events in Redis');
    c.disconnect();
    await redis.stop('SIGTERM');
    await until(() => f.running.size === 0, 5000, 'the stream to stop once its lease lapsed');
    expect(node.status().owned).toEqual([]);
    await redis.run();
    const c2 = redis.client();
    await until(async () => f.running.size === 1 && (await leaseOwners(c2, ['s1'])).get('s1') === 'a', 15_000, 'the node to take the stream back');
    await until(() => node.status().bufferedEvents === 0, 10_000, 'the held events to be written');
    const log = await eventLog(c2, 's1');
    expect(checkOneSequence(log)).toBeUndefined();
    // Taken back under a new epoch, seq continuing after the held events (the restart's start).
    expect(f.starts.at(-1)!.startSeq).toBeGreaterThan(f.starts[0]!.startSeq);
    expect(log.at(-1)!.epoch).toBe(2);
    expect(await counter(metrics.bufferDropped)).toBe(0);
    expect(await counter(metrics.fenced)).toBe(0);
    // Every held event was written: the seqs run on without a hole up to the restart's first event.
    const restart = log.findIndex((e) => e.epoch === 2);
    const held = log.slice(0, restart).map((e) => e.seq);
    expect(held).toEqual(held.map((_, i) => held[0]! + i));
    expect(log[restart]!.seq).toBe(held.at(-1)! + 1);
    c2.disconnect();
  });
});

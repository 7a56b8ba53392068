// Cluster mode end to end (issue 24, "What it must show"): three `casa-live serve --config`
// processes (the built CLI, the dev model) share twelve streams (RTSP and file inputs) through
// a real redis-server (AOF, appendfsync always: with everysec, a redis-server killed while a
// slow disk made it postpone its AOF write lost an event a viewer had already received). One
// cluster lives through the whole file, in order: spread and single ownership; kill -9 and
// failover with gap-free resume on another node; SIGSTOP past the lease, then SIGCONT; Redis
// crash and restart; SIGTERM hand-over; streams added and removed through the API. Leases are
// short (2 s) to keep it quick; nothing here asserts a latency a loaded machine could break,
// only the bounds the issue sets.
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_MODEL, ffmpeg, makeClip } from '../cli/helpers.js';
import { RtspServer } from '../ingest/helpers/rtsp-server.js';
import { ensureBuilt, freePort, getJson, sleep, TestClient, until, type Msg } from '../server/helpers.js';
import { checkOneSequence, eventLog, killNodes, clusterHistory, leaseOwners, RedisServer, startNode, tempDir, writeNodeConfig, type LoggedEvent, type NodeProcess } from './helpers.js';

const LEASE_MS = 2000;
const tmp = tempDir('casa-cluster-');
const RTSP_IDS = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8'];
const FILE_IDS = ['f1', 'f2', 'f3', 'f4'];
const IDS = [...RTSP_IDS, ...FILE_IDS];

let redis: RedisServer;
let rtsp: RtspServer;
let db: Redis;
const nodes = new Map<string, NodeProcess>();
const clients: TestClient[] = [];

function configFor(nodeId: string, clip: string): string {
  return writeNodeConfig(tmp.dir, nodeId, {
    model: DEV_MODEL,
    engine: { threads: { workers: 1 } },
    captionLog: { fsync: false },
    limits: { resumeWindow: 5000 },
    defaults: { fps: 2, restart: { initialDelayMs: 1000, maxDelayMs: 2000 } },
    streams: [...RTSP_IDS.map((id) => ({ id, input: rtsp.url })), ...FILE_IDS.map((id) => ({ id, input: clip }))],
    cluster: { redis: redis.url, nodeId, leaseMs: LEASE_MS, renewEveryMs: 500 },
  });
}

async function launch(nodeId: string): Promise<NodeProcess> {
  const n = await startNode(nodeId, path.join(tmp.dir, `${nodeId}.yaml`));
  nodes.set(nodeId, n);
  return n;
}

async function viewer(node: NodeProcess, streams: string[], resume?: Record<string, number>): Promise<TestClient> {
  const c = await TestClient.connect(node.port, { token: null });
  clients.push(c);
  await c.waitFor((m) => m.some((x) => x.type === 'hello'), 5000, 'hello');
  await c.subscribe(streams, resume ? { resume } : {});
  return c;
}

const live = (): NodeProcess[] => [...nodes.values()].filter((n) => n.child.exitCode === null && n.child.signalCode === null);

/** What a node says it owns (GET /readyz). */
async function ownedBy(n: NodeProcess): Promise<string[]> {
  return ((await getJson(`http://127.0.0.1:${n.port}/readyz`)).body.cluster?.owned ?? []) as string[];
}

/** Every stream leased to a live node, each node within one stream of the others, the nodes agreeing with Redis. */
async function settled(expected = IDS): Promise<boolean> {
  const alive = live();
  const owners = await leaseOwners(db, expected);
  if (owners.size !== expected.length || ![...owners.values()].every((o) => alive.some((n) => n.id === o))) return false;
  const counts = alive.map((n) => [...owners.values()].filter((o) => o === n.id).length);
  if (Math.max(...counts) - Math.min(...counts) > 1) return false;
  const claimed = await Promise.all(alive.map(ownedBy));
  return alive.every((n, i) => [...claimed[i]!].sort().join() === expected.filter((id) => owners.get(id) === n.id).sort().join());
}

const committedSeqs = (msgs: Msg[], stream: string): number[] =>
  msgs.filter((m) => m.stream === stream && (m.type === 'caption' || m.type === 'status')).map((m) => m.seq as number);
const logCommitted = (log: LoggedEvent[], from: number, to: number): number[] =>
  log.filter((e) => e.type !== 'token' && e.seq >= from && e.seq <= to).map((e) => e.seq);

/**
 * A viewer's events of a stream (its connections in order, the first a fresh subscribe, the
 * others resumes): strictly increasing, and every committed event of the log in their range
 * (after the status a fresh subscribe starts with).
 */
async function expectGapFree(stream: string, ...received: Msg[][]): Promise<void> {
  const all = received.flatMap((msgs) => msgs.filter((m) => m.stream === stream && typeof m.seq === 'number').map((m) => m.seq as number));
  for (let i = 1; i < all.length; i++) expect(all[i], `${stream}: seq ${all[i]} after ${all[i - 1]}`).toBeGreaterThan(all[i - 1]!);
  const committed = received.flatMap((msgs) => committedSeqs(msgs, stream)).slice(1);
  const log = await eventLog(db, stream);
  expect(committed, `${stream}: committed events received vs the log`).toEqual(logCommitted(log, committed[0]!, committed.at(-1)!));
}

beforeAll(async () => {
  await ensureBuilt();
  redis = await RedisServer.start({ appendfsync: 'always' });
  db = redis.client();
  const rtspClip = path.join(tmp.dir, 'live.mp4');
  await ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10:duration=20', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '5', '-pix_fmt', 'yuv420p', rtspClip]);
  const fileClip = await makeClip(path.join(tmp.dir, 'file.mp4'), 10);
  rtsp = new RtspServer(await freePort(), rtspClip, '/cams');
  await rtsp.start();
  for (const id of ['n1', 'n2', 'n3']) configFor(id, fileClip);
  await Promise.all(['n1', 'n2', 'n3'].map(launch));
}, 120_000);

afterAll(async () => {
  for (const c of clients) await c.close();
  await killNodes(nodes.values());
  db?.disconnect();
  await rtsp?.stop();
  await redis?.close();
  tmp.cleanup();
});

describe('cluster of three nodes', () => {
  it('each of 12 streams is owned by exactly one node, load within ±1; viewers on any node get every stream', async () => {
    await until(() => settled(), 40_000, 'the streams spread over the three nodes');
    // In a steady cluster, sampled for a while: every stream has one lease, and exactly one node runs it.
    for (let i = 0; i < 8; i++) {
      const claimed = (await Promise.all(live().map(ownedBy))).flat();
      const history = (): string => `sample ${i} at ${new Date().toISOString()}; the nodes' cluster log:\n${clusterHistory(live())}`;
      expect(claimed.sort(), history()).toEqual([...IDS].sort());
      expect((await leaseOwners(db, IDS)).size, history()).toBe(IDS.length);
      await sleep(250);
    }
    const [n1, n2] = [nodes.get('n1')!, nodes.get('n2')!];
    const v1 = await viewer(n1, IDS);
    const v2 = await viewer(n2, IDS);
    for (const v of [v1, v2]) await v.waitFor((m) => IDS.every((id) => m.some((x) => x.type === 'caption' && x.stream === id)), 30_000, 'a caption of every stream');
    // hello and /v1/streams name the owners, the same on every node.
    const hello = v1.of('hello')[0]!;
    expect(hello.node).toBe('n1');
    const owners = await leaseOwners(db, IDS);
    expect(hello.owners).toEqual(Object.fromEntries(IDS.map((id) => [id, owners.get(id)])));
    const listed = (await getJson(`http://127.0.0.1:${n2.port}/v1/streams`)).body.streams as Array<{ id: string; owner: string; state: string }>;
    expect(Object.fromEntries(listed.map((s) => [s.id, s.owner]))).toEqual(Object.fromEntries(owners));
    for (const id of IDS) expect(checkOneSequence(await eventLog(db, id))).toBeUndefined();
  }, 90_000);

  it('kill -9 a node: its streams resume on the others within leaseMs + 5 s; viewers resume with no gap and no duplicate', async () => {
    const victim = nodes.get('n3')!;
    const lost = await ownedBy(victim);
    expect(lost.length).toBeGreaterThan(0);
    const [n1, n2] = [nodes.get('n1')!, nodes.get('n2')!];
    const onVictim = await viewer(victim, lost);
    const steady = await viewer(n1, lost);
    await onVictim.waitFor((m) => lost.every((id) => m.some((x) => x.type === 'caption' && x.stream === id)), 30_000, 'captions through the victim');
    const lastBefore = new Map(await Promise.all(lost.map(async (id) => [id, (await eventLog(db, id)).at(-1)!.seq] as const)));
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await victim.exited;
    await onVictim.closed;
    // The viewer of the dead node reconnects to another node and resumes from its last seqs.
    const resumed = await viewer(n2, lost, Object.fromEntries(lost.map((id) => [id, onVictim.lastSeq(id)])));
    // Taken over: the new owner's pipeline started (its first event in the stream's log); then captioned again.
    const takenAt = new Map<string, number>();
    const captionedAt = new Map<string, number>();
    await until(async () => {
      for (const id of lost) {
        if (captionedAt.has(id)) continue;
        const after = (await eventLog(db, id)).filter((e) => e.seq > lastBefore.get(id)! && e.node !== 'n3');
        if (!takenAt.has(id) && after.length > 0) takenAt.set(id, Date.now() - killedAt);
        if (after.some((e) => e.type === 'caption')) captionedAt.set(id, Date.now() - killedAt);
      }
      return captionedAt.size === lost.length;
    }, LEASE_MS + 30_000, 'captions of the dead node\'s streams from the others');
    console.log(`kill -9 of n3 (lease ${LEASE_MS} ms): its ${lost.length} streams started on the others after ${[...takenAt.values()].join(', ')} ms, captioned again after ${[...captionedAt.values()].join(', ')} ms (the inputs' start-up included)`);
    expect(Math.max(...takenAt.values())).toBeLessThanOrEqual(LEASE_MS + 5000);
    for (const v of [resumed, steady]) {
      await v.waitFor((m) => lost.every((id) => m.some((x) => x.type === 'caption' && x.stream === id && (x.seq as number) > onVictim.lastSeq(id) + 3)), 20_000, 'captions after the failover');
    }
    for (const id of lost) {
      await expectGapFree(id, onVictim.messages, resumed.messages);
      await expectGapFree(id, steady.messages);
      expect(checkOneSequence(await eventLog(db, id))).toBeUndefined();
    }
  }, 90_000);

  it('a node paused (SIGSTOP) past its lease, then resumed, publishes nothing for the streams it lost', async () => {
    await launch('n3'); // the killed node comes back (a node added to the cluster)
    await until(() => settled(), 40_000, 'the load spread again over three nodes');
    const paused = nodes.get('n1')!;
    const lost = await ownedBy(paused);
    expect(lost.length).toBeGreaterThan(0);
    const before = new Map(await Promise.all(lost.map(async (id) => [id, (await eventLog(db, id)).at(-1)!.seq] as const)));
    paused.child.kill('SIGSTOP');
    await until(async () => [...(await leaseOwners(db, lost)).values()].every((o) => o !== 'n1') && (await leaseOwners(db, lost)).size === lost.length, LEASE_MS + 15_000, 'the paused node\'s streams to move');
    await until(async () => (await Promise.all(lost.map(async (id) => (await eventLog(db, id)).some((e) => e.seq > before.get(id)! && e.node !== 'n1')))).every(Boolean), 20_000, 'the others to caption them');
    paused.child.kill('SIGCONT');
    await until(() => paused.lines().filter((l) => l.msg === 'cluster: lease lost; stopping the stream').length >= lost.length, 15_000, 'the resumed node to see its leases gone');
    await until(() => settled(), 40_000, 'the load spread again');
    for (const id of IDS) {
      const log = await eventLog(db, id);
      // No interleaving: once another lease wrote, the paused node's old lease never did again.
      expect(checkOneSequence(log)).toBeUndefined();
    }
  }, 120_000);

  it('Redis crashes and restarts (AOF always) mid-stream: no acknowledged caption lost; the nodes recover by themselves', async () => {
    const n2 = nodes.get('n2')!;
    const v = await viewer(n2, IDS);
    await v.waitFor((m) => IDS.every((id) => m.some((x) => x.type === 'caption' && x.stream === id)), 30_000, 'captions before the crash');
    const acknowledged = new Map(await Promise.all(IDS.map(async (id) => [id, await eventLog(db, id)] as const)));
    await redis.stop('SIGKILL');
    await until(async () => (await getJson(`http://127.0.0.1:${n2.port}/readyz`)).body.degraded === true, 10_000, '/readyz to say degraded');
    await sleep(500);
    await redis.run();
    const backAt = Date.now();
    await until(async () => (await Promise.all(live().map(async (n) => (await getJson(`http://127.0.0.1:${n.port}/readyz`)).body.degraded))).every((d) => d === false), 20_000, 'every node to recover');
    await until(() => settled(), 40_000, 'every stream owned again');
    for (const id of IDS) {
      await until(async () => (await eventLog(db, id)).some((e) => e.type === 'caption' && e.seq > acknowledged.get(id)!.at(-1)!.seq), 30_000, `captions of ${id} after the restart`);
      const log = await eventLog(db, id);
      const before = acknowledged.get(id)!;
      expect(log.slice(0, before.length), `${id}: the events acknowledged before the crash`).toEqual(before);
      expect(checkOneSequence(log)).toBeUndefined();
    }
    await v.waitFor((m) => IDS.every((id) => m.some((x) => x.type === 'caption' && x.stream === id && (x.seq as number) > acknowledged.get(id)!.at(-1)!.seq)), 20_000, 'the viewer to get captions after the restart');
    for (const id of IDS) await expectGapFree(id, v.messages);
    // For leaseMs after a node reconnects, it claims only streams it held (docs/cluster.md): the
    // next test's hand-over needs every node's grace over.
    const reconnectedAt = live().map((n) => Math.max(backAt, ...n.lines().filter((l) => l.msg === 'cluster: Redis reachable again').map((l) => Date.parse(String(l.time)))));
    await sleep(Math.max(0, Math.max(...reconnectedAt) + LEASE_MS + 500 - Date.now()));
  }, 120_000);

  it('SIGTERM a node: its streams move to the others at once (under 2 s)', async () => {
    await until(() => settled(), 40_000, 'a settled cluster');
    const leaving = nodes.get('n2')!;
    const moving = await ownedBy(leaving);
    expect(moving.length).toBeGreaterThan(0);
    const t0 = Date.now();
    leaving.child.kill('SIGTERM');
    await until(async () => {
      const owners = await leaseOwners(db, moving);
      return owners.size === moving.length && [...owners.values()].every((o) => o !== 'n2');
    }, 10_000, 'the leaving node\'s streams to move');
    const took = Date.now() - t0;
    console.log(`SIGTERM: ${moving.length} streams leased by the others after ${took} ms`);
    expect(took, `the nodes' cluster log:\n${clusterHistory(nodes.values())}`).toBeLessThan(2000);
    expect(await leaving.exited).toEqual({ code: 0, signal: null });
    for (const id of moving) {
      const log = await eventLog(db, id);
      expect(log.some((e) => e.node === 'n2' && e.state === 'reconnecting')).toBe(true); // it said so before leaving
      expect(checkOneSequence(log)).toBeUndefined();
    }
  }, 60_000);

  it('a stream added and removed through the API on one node is picked up and stopped everywhere', async () => {
    const [n1, n3] = [nodes.get('n1')!, nodes.get('n3')!];
    const added = await getJson(`http://127.0.0.1:${n1.port}/v1/streams`, undefined, { method: 'POST', body: JSON.stringify({ id: 'api1', input: rtsp.url }) });
    expect(added.status).toBe(201);
    for (const n of [n1, n3]) await until(async () => ((await getJson(`http://127.0.0.1:${n.port}/v1/streams`)).body.streams as Array<{ id: string }>).some((s) => s.id === 'api1'), 10_000, `api1 listed on ${n.id}`);
    await until(async () => (await leaseOwners(db, ['api1'])).size === 1, 15_000, 'a node to take api1');
    const watcher = await viewer(n3, ['api1']);
    await watcher.waitFor((m) => m.some((x) => x.type === 'caption'), 30_000, 'captions of api1 on another node');
    // A config-file stream cannot be removed through the API; the new one can, from any node.
    expect((await getJson(`http://127.0.0.1:${n3.port}/v1/streams/r1`, undefined, { method: 'DELETE' })).status).toBe(409);
    expect((await getJson(`http://127.0.0.1:${n3.port}/v1/streams/api1`, undefined, { method: 'DELETE' })).status).toBe(200);
    await watcher.waitFor((m) => m.some((x) => x.type === 'status' && x.state === 'ended' && x.reason === 'stream removed'), 15_000, 'the removal status');
    for (const n of [n1, n3]) await until(async () => !((await getJson(`http://127.0.0.1:${n.port}/v1/streams`)).body.streams as Array<{ id: string }>).some((s) => s.id === 'api1'), 10_000, `api1 gone from ${n.id}`);
    await until(async () => (await leaseOwners(db, ['api1'])).size === 0, 10_000, 'api1\'s lease released');
    expect((await Promise.all([n1, n3].map(ownedBy))).flat()).not.toContain('api1');
  }, 90_000);
});

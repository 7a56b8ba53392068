// The outputs in cluster mode: two `casa-live serve` processes (the built CLI, the dev model)
// share two file streams through a real redis-server, and both have the same MQTT output on
// Debian's mosquitto (started here, installed by .ci/deps-server.sh). Every node serves every
// stream to its viewers, but only the node that captions a stream feeds the outputs: each
// caption reaches the broker once, in the order of the stream's log in Redis.
// The streams do not loop (restart on failure only): each ends once, after its one run.
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_MODEL, makeClip } from '../cli/helpers.js';
import { startBroker, subscriber, type Received } from '../outputs/mosquitto.js';
import { ensureBuilt, freePort, until } from '../server/helpers.js';
import { eventLog, killNodes, RedisServer, startNode, tempDir, writeNodeConfig, type NodeProcess } from './helpers.js';

const IDS = ['s1', 's2'];
const tmp = tempDir('casa-cluster-outputs-');
const children: ChildProcess[] = [];
const clients: MqttClient[] = [];
const nodes: NodeProcess[] = [];
let redis: RedisServer;
let db: Redis;
let got: Received[];

beforeAll(async () => {
  await ensureBuilt();
  redis = await RedisServer.start();
  db = redis.client();
  const mqttPort = await freePort();
  await startBroker(tmp.dir, 'broker', mqttPort, [`listener ${mqttPort} 127.0.0.1`, 'allow_anonymous true'], children);
  const url = `mqtt://127.0.0.1:${mqttPort}`;
  got = (await subscriber(url, 'casa-live/+/caption', clients)).got;
  const clip = await makeClip(path.join(tmp.dir, 'file.mp4'), 6);
  for (const nodeId of ['n1', 'n2']) {
    const config = writeNodeConfig(tmp.dir, nodeId, {
      model: DEV_MODEL,
      engine: { threads: { workers: 1 } },
      captionLog: { fsync: false },
      defaults: { fps: 2, restart: { policy: 'on-failure' } },
      streams: IDS.map((id) => ({ id, input: clip })),
      outputs: { mqtt: { url } },
      cluster: { redis: redis.url, nodeId, leaseMs: 2000, renewEveryMs: 500 },
    });
    nodes.push(await startNode(nodeId, config));
  }
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.end(true);
  await killNodes(nodes);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  db?.disconnect();
  await redis?.close();
  tmp.cleanup();
});

/** The captions of `stream` the broker delivered, as (seq, text), in arrival order. */
function delivered(stream: string): Array<{ seq: number; text: string }> {
  return got
    .filter((m) => m.topic === `casa-live/${stream}/caption`)
    .map((m) => JSON.parse(m.payload) as { seq: number; text: string })
    .map(({ seq, text }) => ({ seq, text }));
}

describe('outputs in cluster mode', () => {
  it('each caption of each stream reaches MQTT once, from the node that captions it, in the log\'s order', async () => {
    // File streams end: wait for each log's `ended` status, then for the broker to catch up.
    await until(async () => (await Promise.all(IDS.map((id) => eventLog(db, id)))).every((log) => log.some((e) => e.type === 'status' && e.state === 'ended')), 90_000, 'both streams to end');
    for (const id of IDS) {
      const captions = (await eventLog(db, id)).filter((e) => e.type === 'caption');
      expect(captions.length).toBeGreaterThan(0);
      await until(async () => delivered(id).length >= captions.length, 20_000, `${id}'s captions on MQTT`);
      // One copy each (the other node serves viewers only), in the log's order, with its text.
      expect(delivered(id)).toEqual(captions.map((e) => ({ seq: e.seq, text: e.text })));
    }
  }, 150_000);
});

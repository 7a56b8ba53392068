// WebSocket feed: hello, subscribe, token/caption/status, resume by seq, auth at upgrade,
// malformed messages, limits. The caption pipeline is the scripted stand-in
// (fixtures/scripted-pipeline.mjs), whose exact event timing these checks need; the same
// feed on the real model and a live RTSP stream: live-model.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runServe, type ServeHandle } from '../../src/server/index.js';
import { silentLogger } from '../../src/logger.js';
import { scriptedFactory } from './fixtures/scripted-pipeline.mjs';
import { ADMIN, TOKEN, TestClient, removeDir, seqsOf, sleep, tmpDir, until, writeConfig } from './helpers.js';

let dir: string;
let handle: ServeHandle;
const clients: TestClient[] = [];
const connect = async (...args: Parameters<typeof TestClient.connect>): Promise<TestClient> => {
  const c = await TestClient.connect(...args);
  clients.push(c);
  return c;
};

beforeAll(async () => {
  dir = await tmpDir();
  const configPath = await writeConfig(dir, {
    auth: { tokens: [TOKEN], adminTokens: [ADMIN], allowedOrigins: ['https://studio.example'] },
    limits: { maxClients: 250, maxPayloadBytes: 1024, resumeWindow: 500 },
    streams: [
      { id: 'cam1', input: 'rtsp://127.0.0.1:8554/cam1' },
      { id: 'cam2', input: 'rtsp://127.0.0.1:8554/cam2' },
    ],
  });
  handle = await runServe({
    configPath,
    pipelineFactory: scriptedFactory({ frameMs: 40, tokensPerFrame: 3 }),
    prepare: async () => ({ modelName: 'scripted-stand-in' }),
    logger: silentLogger(),
  });
  await handle.ready;
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await handle?.close();
  await removeDir(dir);
});

describe('websocket feed', () => {
  it('says hello, then streams token, caption and status events with increasing seq', async () => {
    const c = await connect(handle.port);
    await c.waitFor((m) => m.some((x) => x.type === 'hello'));
    const hello = c.of('hello')[0]!;
    expect(hello).toMatchObject({ type: 'hello', streams: ['cam1', 'cam2'], model: 'scripted-stand-in', fps: 2, resumeWindow: 500 });
    expect(typeof hello.version).toBe('string');

    const ack = await c.subscribe(['cam1'], { backfill: 1 });
    expect(ack).toMatchObject({ type: 'subscribed', streams: [{ stream: 'cam1' }] });
    expect(['connecting', 'live']).toContain((ack.streams as Array<{ state: string }>)[0]!.state);
    await c.waitFor((m) => m.filter((x) => x.type === 'caption').length >= 4, 5000, '4 captions');
    const caption = c.of('caption', 'cam1')[0]!;
    expect(caption).toMatchObject({ type: 'caption', stream: 'cam1' });
    for (const k of ['seq', 'frame', 'start', 'end', 'latencyMs']) expect(typeof caption[k]).toBe('number');
    expect(c.of('token', 'cam1').length).toBeGreaterThan(3);
    const token = c.of('token', 'cam1').at(-1)!;
    for (const k of ['seq', 'frame', 'pts']) expect(typeof token[k]).toBe('number');
    expect(c.of('status', 'cam1').length).toBeGreaterThan(0);
    expect(c.of('status', 'cam1').some((s) => s.state === 'live' && s.lagMs === 0 && s.droppedFrames === 0)).toBe(true);
    // Only the subscribed stream, seq strictly increasing.
    expect(c.messages.some((m) => m.stream === 'cam2')).toBe(false);
    const seqs = seqsOf(c.messages, 'cam1');
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
    // A caption's text is the concatenation of its frame's tokens.
    const frame = c.of('caption', 'cam1').at(-1)!.frame;
    const tokens = c.of('token', 'cam1').filter((t) => t.frame === frame).map((t) => t.text).join('');
    if (tokens) expect(c.of('caption', 'cam1').at(-1)!.text).toBe(tokens);
  });

  it('resumes after a disconnect with no gap and no duplicate', async () => {
    const a = await connect(handle.port);
    await a.subscribe(['cam1', 'cam2']);
    await a.waitFor((m) => m.filter((x) => x.type === 'caption' && x.stream === 'cam2').length >= 3);
    await a.close();
    const resume = { cam1: a.lastSeq('cam1'), cam2: a.lastSeq('cam2') };
    await sleep(300); // captions keep coming while it is away
    const b = await connect(handle.port);
    const ack = await b.subscribe(['cam1', 'cam2'], { resume });
    const acked = ack.streams as Array<{ stream: string; replay: number }>;
    expect(acked.find((s) => s.stream === 'cam2')!.replay).toBeGreaterThan(0);
    await b.waitFor((m) => m.filter((x) => x.type === 'caption' && x.stream === 'cam2').length >= 8);
    await b.close();

    const logged = await fetch(`http://127.0.0.1:${handle.port}/v1/streams/cam2/captions?after=0&limit=10000`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    }).then((r) => r.json() as Promise<{ events: Array<{ type: string; seq: number }> }>);
    const loggedCaptions = logged.events.filter((e) => e.type === 'caption').map((e) => e.seq);

    const got = [...seqsOf(a.messages, 'cam2', 'caption'), ...seqsOf(b.messages, 'cam2', 'caption')];
    expect(new Set(got).size).toBe(got.length); // no duplicate
    const first = got[0]!;
    const last = got.at(-1)!;
    // Every caption the log holds between the first and last one received was received.
    expect(got).toEqual(loggedCaptions.filter((s) => s >= first && s <= last));
    // And the whole feed (tokens included) is strictly increasing across the reconnect.
    const all = [...seqsOf(a.messages, 'cam2'), ...seqsOf(b.messages, 'cam2')];
    for (let i = 1; i < all.length; i++) expect(all[i]).toBeGreaterThan(all[i - 1]!);
  });

  it('refuses a missing or wrong token at upgrade, accepts Bearer and ?token=', async () => {
    await expect(TestClient.connect(handle.port, { token: null })).rejects.toMatchObject({ statusCode: 401 });
    await expect(TestClient.connect(handle.port, { token: 'wrong-token-0123456789abcdef' })).rejects.toMatchObject({ statusCode: 401 });
    const bearer = await connect(handle.port, { token: null, headers: { Authorization: `Bearer ${TOKEN}` } });
    await bearer.waitFor((m) => m.some((x) => x.type === 'hello'));
    const admin = await connect(handle.port, { token: ADMIN });
    await admin.waitFor((m) => m.some((x) => x.type === 'hello'));
    await expect(TestClient.connect(handle.port, { headers: { Origin: 'https://evil.example' } })).rejects.toMatchObject({ statusCode: 403 });
    const allowed = await connect(handle.port, { headers: { Origin: 'https://studio.example' } });
    await allowed.waitFor((m) => m.some((x) => x.type === 'hello'));
    const wrongPath = await fetch(`http://127.0.0.1:${handle.port}/v1/ws`, { headers: { Connection: 'Upgrade', Upgrade: 'websocket' } }).catch(() => null);
    expect(wrongPath === null || wrongPath.status !== 101).toBe(true);
  });

  it('answers malformed messages with error events and keeps the connection', async () => {
    const c = await connect(handle.port);
    await c.waitFor((m) => m.some((x) => x.type === 'hello'));
    c.send('this is not json');
    c.send({ type: 'dance' });
    c.send({ type: 'subscribe' });
    c.send({ type: 'subscribe', streams: ['../etc'] });
    c.send({ type: 'subscribe', streams: ['nope'] });
    c.send({ type: 'subscribe', streams: ['cam1'], resume: { cam1: -3 } });
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    await c.waitFor((m) => m.filter((x) => x.type === 'error').length >= 7, 3000, '7 errors');
    const reasons = c.of('error').map((e) => e.reason as string);
    expect(reasons[0]).toMatch(/malformed JSON/);
    expect(reasons[1]).toMatch(/unknown message type/);
    expect(reasons[2]).toMatch(/streams/);
    expect(reasons[3]).toMatch(/not a valid stream id/);
    expect(reasons[4]).toBe('unknown stream "nope"');
    expect(reasons[5]).toMatch(/resume/);
    expect(reasons[6]).toMatch(/binary/);
    expect(c.of('error')[1]!.request).toEqual({ type: 'dance' });
    c.send({ type: 'ping', id: 7 });
    await c.waitFor((m) => m.some((x) => x.type === 'pong'));
    expect(c.of('pong')[0]).toMatchObject({ id: 7 });
    expect(c.ws.readyState).toBe(c.ws.OPEN);
  });

  it('closes a client that sends a message over maxPayload with 1009', async () => {
    const c = await connect(handle.port);
    c.send({ type: 'subscribe', streams: ['cam1'], pad: 'x'.repeat(4000) });
    expect((await c.closed).code).toBe(1009);
  });

  it('delivers every caption to 200 concurrent clients', async () => {
    const many = await Promise.all(Array.from({ length: 200 }, () => connect(handle.port)));
    await Promise.all(many.map((c) => c.subscribe(['cam1'])));
    const start = Math.max(...many.map((c) => (c.of('subscribed')[0]!.streams as Array<{ lastSeq: number }>)[0]!.lastSeq));
    await until(() => many.every((c) => c.of('caption', 'cam1').filter((m) => (m.seq as number) > start).length >= 10), 15_000, '10 captions on every client');
    const reference = seqsOf(many[0]!.messages, 'cam1', 'caption').filter((s) => s > start).slice(0, 10);
    for (const c of many) {
      const got = seqsOf(c.messages, 'cam1', 'caption').filter((s) => s > start).slice(0, 10);
      expect(got).toEqual(reference);
    }
    const metrics = await fetch(`http://127.0.0.1:${handle.port}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/casa_live_websocket_clients \d+/);
    expect(Number(/casa_live_websocket_clients (\d+)/.exec(metrics)![1])).toBeGreaterThanOrEqual(200);
    await Promise.all(many.map((c) => c.close()));
  });

  it('refuses clients past limits.maxClients with 503', async () => {
    const open = clients.filter((c) => c.ws.readyState === c.ws.OPEN).length;
    const extra = await Promise.all(Array.from({ length: 250 - open }, () => connect(handle.port)));
    await expect(TestClient.connect(handle.port)).rejects.toMatchObject({ statusCode: 503 });
    await Promise.all(extra.map((c) => c.close()));
    await until(async () => {
      const t = await fetch(`http://127.0.0.1:${handle.port}/metrics`).then((r) => r.text());
      return Number(/casa_live_websocket_clients (\d+)/.exec(t)![1]) < 250;
    });
    const again = await connect(handle.port);
    await again.waitFor((m) => m.some((x) => x.type === 'hello'));
  });
});

// HTTP: health, readiness (model loading), metrics, the stream API (add, change, remove at
// run time without disturbing the other streams), config reload, the overlay route.
// Pipelines are the scripted stand-in (fixtures/scripted-pipeline.mjs) for the model pipeline.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runServe, type ServeHandle } from '../../src/server/index.js';
import { silentLogger } from '../../src/logger.js';
import { scriptedFactory, type ScriptedFactory } from './fixtures/scripted-pipeline.mjs';
import { ADMIN, TOKEN, TestClient, getJson, removeDir, tmpDir, until, writeConfig } from './helpers.js';

let dir: string;
let configPath: string;
let handle: ServeHandle;
let factory: ScriptedFactory;
let releaseModel: () => void;
let base: string;

beforeAll(async () => {
  dir = await tmpDir();
  configPath = await writeConfig(dir, {
    limits: { maxStreams: 5 },
    streams: [
      { id: 'cam1', input: 'rtsp://127.0.0.1:8554/cam1' },
      { id: 'cam2', input: 'rtmp://127.0.0.1/live/cam2', fps: 1 },
      { id: 'cam3', input: 'https://example.com/live.m3u8', enabled: false },
    ],
  });
  factory = scriptedFactory({ frameMs: 50 });
  const modelGate = new Promise<void>((resolve) => (releaseModel = resolve));
  handle = await runServe({
    configPath,
    pipelineFactory: factory,
    prepare: async () => {
      await modelGate;
      return { modelName: 'gated-stand-in' };
    },
    logger: silentLogger(),
  });
  base = `http://127.0.0.1:${handle.port}`;
});

afterAll(async () => {
  await handle?.close();
  await removeDir(dir);
});

const createdFor = (id: string): number => (factory.created as Array<{ stream: string }>).filter((c) => c.stream === id).length;

describe('health and readiness', () => {
  it('is healthy at once, ready only once the model is loaded', async () => {
    expect((await getJson(`${base}/healthz`)).status).toBe(200);
    const before = await getJson(`${base}/readyz`);
    expect(before.status).toBe(503);
    expect(before.body.model).toMatchObject({ state: 'loading' });
    expect(createdFor('cam1')).toBe(0); // no stream starts before the model is loaded
    releaseModel();
    await handle.ready;
    const after = await getJson(`${base}/readyz`);
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ ready: true, model: { state: 'loaded', name: 'gated-stand-in' } });
    expect(after.body.streams.map((s: { id: string }) => s.id)).toEqual(['cam1', 'cam2', 'cam3']);
    expect(after.body.streams.find((s: { id: string }) => s.id === 'cam3').state).toBe('disabled');
    await until(() => createdFor('cam1') === 1 && createdFor('cam2') === 1);
    expect(createdFor('cam3')).toBe(0);
  });

  it('serves Prometheus metrics', async () => {
    await until(async () => /casa_live_captions_total\{stream="cam1"\} [1-9]/.test(await fetch(`${base}/metrics`).then((r) => r.text())));
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    for (const name of [
      'casa_live_frames_in_total',
      'casa_live_frames_dropped_total',
      'casa_live_tokens_total',
      'casa_live_frame_to_caption_latency_seconds_bucket',
      'casa_live_kv_tokens',
      'casa_live_stream_reconnects_total',
      'casa_live_websocket_clients',
      'casa_live_model_loaded 1',
      'casa_live_process_cpu_seconds_total',
    ]) {
      expect(text).toContain(name);
    }
    expect(Number(/casa_live_kv_tokens\{stream="cam1"\} (\d+)/.exec(text)?.[1])).toBeGreaterThan(0);
  });

  it('serves the overlay page (no external assets, CSP) and refuses bad ids', async () => {
    const res = await fetch(`${base}/overlay/cam1?token=${TOKEN}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    const html = await res.text();
    expect(html).toContain('<html');
    expect(html).not.toMatch(/(src|href)=["']https?:/);
    expect((await fetch(`${base}/overlay/..%2Fetc`)).status).toBe(404);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});

describe('stream API', () => {
  it('requires a token, and an admin token to change streams', async () => {
    expect((await getJson(`${base}/v1/streams`)).status).toBe(401);
    const list = await getJson(`${base}/v1/streams`, TOKEN);
    expect(list.status).toBe(200);
    expect(list.body.streams.map((s: { id: string }) => s.id)).toEqual(['cam1', 'cam2', 'cam3']);
    const post = await getJson(`${base}/v1/streams`, TOKEN, { method: 'POST', body: JSON.stringify({ id: 'x', input: 'rtsp://h/x' }) });
    expect(post.status).toBe(403);
    expect((await getJson(`${base}/v1/streams/cam1`, 'nope-nope-nope-nope-nope', { method: 'DELETE' })).status).toBe(401);
  });

  it('answers a method a route does not take with 405 and the methods it does, before any token check', async () => {
    const one = await fetch(`${base}/v1/streams/cam1`, { method: 'PATCH' });
    expect(one.status).toBe(405);
    expect(one.headers.get('allow')).toBe('GET, PUT, DELETE');
    expect(await one.json()).toEqual({ error: 'method PATCH not allowed' });
    const list = await fetch(`${base}/v1/streams`, { method: 'DELETE' });
    expect(list.status).toBe(405);
    expect(list.headers.get('allow')).toBe('GET, POST');
    expect((await fetch(`${base}/healthz`, { method: 'POST' })).headers.get('allow')).toBe('GET, HEAD');
    const none = await getJson(`${base}/v1/nope`, TOKEN);
    expect(none).toEqual({ status: 404, body: { error: 'no route for /v1/nope' } });
  });

  it('validates a new stream and names the bad field', async () => {
    const bad = await getJson(`${base}/v1/streams`, ADMIN, { method: 'POST', body: JSON.stringify({ id: 'cam9', input: 'rtps://host/x', fps: -1 }) });
    expect(bad.status).toBe(400);
    expect(bad.body.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: 'input', message: expect.stringMatching(/^unsupported scheme "rtps"/) }),
        expect.objectContaining({ path: 'fps' }),
      ]),
    );
    expect((await getJson(`${base}/v1/streams`, ADMIN, { method: 'POST', body: '{nope' })).status).toBe(400);
    const dup = await getJson(`${base}/v1/streams`, ADMIN, { method: 'POST', body: JSON.stringify({ id: 'cam1', input: 'rtsp://h/x' }) });
    expect(dup.status).toBe(409);
  });

  it('adds, changes and removes a stream at run time without touching the others', async () => {
    const cam1Pipelines = createdFor('cam1');
    const watcher = await TestClient.connect(handle.port);
    await watcher.subscribe(['cam1']);

    const add = await getJson(`${base}/v1/streams`, ADMIN, { method: 'POST', body: JSON.stringify({ id: 'lobby', input: 'srt://127.0.0.1:9000?mode=caller' }) });
    expect(add.status).toBe(201);
    expect(add.body.stream).toMatchObject({ id: 'lobby', source: 'api', enabled: true });
    const saved = JSON.parse(await readFile(path.join(dir, 'data', 'streams.api.json'), 'utf8'));
    expect(saved.streams).toEqual([{ id: 'lobby', input: 'srt://127.0.0.1:9000?mode=caller' }]);

    const c = await TestClient.connect(handle.port);
    await c.waitFor((m) => (m.find((x) => x.type === 'hello')?.streams as string[] | undefined)?.includes('lobby') === true);
    await c.subscribe(['lobby']);
    await c.waitFor((m) => m.filter((x) => x.type === 'caption').length >= 2);

    const put = await getJson(`${base}/v1/streams/lobby`, ADMIN, { method: 'PUT', body: JSON.stringify({ input: 'srt://127.0.0.1:9001', fps: 1 }) });
    expect(put.status).toBe(200);
    expect(put.body.stream.config).toMatchObject({ input: 'srt://127.0.0.1:9001', fps: 1 });
    await c.waitFor((m) => m.some((x) => x.type === 'status' && x.reason === 'configuration changed'));
    const n = c.of('caption').length;
    await c.waitFor((m) => m.filter((x) => x.type === 'caption').length >= n + 2);
    const seqs = c.messages.filter((m) => m.stream === 'lobby').map((m) => m.seq as number);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);

    expect((await getJson(`${base}/v1/streams/cam1`, ADMIN, { method: 'DELETE' })).status).toBe(409);
    const del = await getJson(`${base}/v1/streams/lobby`, ADMIN, { method: 'DELETE' });
    expect(del.status).toBe(200);
    await c.waitFor((m) => m.some((x) => x.type === 'status' && x.state === 'ended' && x.reason === 'stream removed'));
    expect((await getJson(`${base}/v1/streams/lobby`, TOKEN)).status).toBe(404);
    expect(JSON.parse(await readFile(path.join(dir, 'data', 'streams.api.json'), 'utf8')).streams).toEqual([]);

    // cam1 was never restarted and its subscriber saw no interruption.
    expect(createdFor('cam1')).toBe(cam1Pipelines);
    expect(watcher.of('status', 'cam1').filter((s) => s.state !== 'live')).toEqual([]);
    await watcher.waitFor((m) => m.filter((x) => x.type === 'caption').length >= 4);
    const frames = watcher.of('caption', 'cam1').map((m) => m.frame as number);
    for (let i = 1; i < frames.length; i++) expect(frames[i]).toBe(frames[i - 1]! + 1);
    await c.close();
    await watcher.close();
  });

  it('reloads the config file: only added, changed and removed streams are touched', async () => {
    const cam1Pipelines = createdFor('cam1');
    const cam2Pipelines = createdFor('cam2');
    const doc = parse(await readFile(configPath, 'utf8'));
    doc.streams = [
      { id: 'cam1', input: 'rtsp://127.0.0.1:8554/cam1' }, // unchanged
      { id: 'cam2', input: 'rtmp://127.0.0.1/live/cam2', fps: 2 }, // changed
      { id: 'cam4', input: '/dev/video0' }, // added; cam3 removed
    ];
    await writeFile(configPath, stringify(doc));
    const r = await handle.reload();
    expect(r).toMatchObject({ ok: true, added: ['cam4'], changed: ['cam2'], removed: ['cam3'] });
    expect(createdFor('cam1')).toBe(cam1Pipelines);
    await until(() => createdFor('cam2') === cam2Pipelines + 1 && createdFor('cam4') === 1);
    const list = await getJson(`${base}/v1/streams`, TOKEN);
    expect(list.body.streams.map((s: { id: string }) => s.id).sort()).toEqual(['cam1', 'cam2', 'cam4']);

    // A broken file is refused; the running config stays.
    await writeFile(configPath, stringify({ ...doc, streams: [{ id: 'cam1', input: 'rtps://x' }] }));
    const bad = await handle.reload();
    expect(bad).toMatchObject({ ok: false });
    expect(bad.ok ? [] : bad.problems).toEqual([expect.objectContaining({ path: 'streams[0].input' })]);
    expect((await getJson(`${base}/v1/streams`, TOKEN)).body.streams.length).toBe(3);
  });
});

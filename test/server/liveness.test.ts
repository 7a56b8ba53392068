// Liveness: dead peers are dropped by the server's pings; a pipeline that will not stop
// does not hold up shutdown. Pipelines: the scripted stand-in (fixtures/scripted-pipeline.mjs).
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CasaServer, type PipelineFactory } from '../../src/server/index.js';
import { loadConfig } from '../../src/config/index.js';
import { silentLogger } from '../../src/logger.js';
import type { CaptionPipeline } from '../../src/pipeline/types.js';
import { scriptedFactory } from './fixtures/scripted-pipeline.mjs';
import { TOKEN, TestClient, removeDir, tmpDir, writeConfig } from './helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await tmpDir();
});
afterAll(async () => {
  await removeDir(dir);
});

it('drops a client that stops answering pings, keeps one that answers', async () => {
  const config = await loadConfig(await writeConfig(dir, { limits: { pingIntervalMs: 150 }, streams: [{ id: 'a', input: 'udp://127.0.0.1:5000' }] }));
  const server = await CasaServer.start({ config, pipelineFactory: scriptedFactory({ frameMs: 50 }), logger: silentLogger() });
  try {
    const healthy = await TestClient.connect(server.port);
    const deaf = new WebSocket(`ws://127.0.0.1:${server.port}/v1/ws?token=${TOKEN}`, { autoPong: false });
    const deafClosed = new Promise<number>((resolve) => deaf.on('close', (code) => resolve(code)));
    await new Promise((r) => deaf.once('open', r));
    const t0 = Date.now();
    expect(await deafClosed).toBe(1006);
    expect(Date.now() - t0).toBeLessThan(2000);
    await new Promise((r) => setTimeout(r, 400));
    expect(healthy.ws.readyState).toBe(WebSocket.OPEN);
    await healthy.close();
  } finally {
    await server.close();
  }
});

it('shuts down in bounded time even when a pipeline never stops', async () => {
  const config = await loadConfig(
    await writeConfig(path.join(dir), {
      dataDir: path.join(dir, 'data2'),
      streams: [
        { id: 'stuck', input: 'udp://127.0.0.1:5001' },
        { id: 'fine', input: 'udp://127.0.0.1:5002' },
      ],
    }),
  );
  const scripted = scriptedFactory({ frameMs: 50 });
  const factory: PipelineFactory = (stream, ctx): CaptionPipeline => {
    const p = scripted(stream, ctx);
    if (stream.id !== 'stuck') return p;
    return { events: p.events, stop: () => new Promise<void>(() => undefined) }; // never resolves
  };
  const server = await CasaServer.start({ config, pipelineFactory: factory, logger: silentLogger(), stopTimeoutMs: 300 });
  await server.ready;
  const c = await TestClient.connect(server.port);
  await c.subscribe(['stuck', 'fine']);
  await c.waitFor((m) => m.filter((x) => x.type === 'caption' && x.stream === 'stuck').length >= 2);
  const t0 = Date.now();
  await server.close();
  expect(Date.now() - t0).toBeLessThan(3000);
  expect((await c.closed).code).toBe(1001);
  expect(c.of('status', 'fine').at(-1)).toMatchObject({ state: 'ended', reason: 'server shutting down' });
  expect(c.of('status', 'stuck').at(-1)).toMatchObject({ state: 'ended', reason: 'server shutting down' });
});

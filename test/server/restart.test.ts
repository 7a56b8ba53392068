// Per-stream restart policies (always / on-failure / never / maxRetries), each stream on
// its own. Pipelines: the scripted stand-in (fixtures/scripted-pipeline.mjs).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CasaServer } from '../../src/server/index.js';
import { loadConfig } from '../../src/config/index.js';
import { silentLogger } from '../../src/logger.js';
import { scriptedFactory, type ScriptedFactory } from './fixtures/scripted-pipeline.mjs';
import { TestClient, removeDir, tmpDir, until, writeConfig } from './helpers.js';

let dir: string;
let server: CasaServer;
let factory: ScriptedFactory;

beforeAll(async () => {
  dir = await tmpDir();
  const config = await loadConfig(
    await writeConfig(dir, {
      defaults: { restart: { initialDelayMs: 50, maxDelayMs: 100 } },
      streams: [
        { id: 'looping', input: 'file-a.mp4' },
        { id: 'onfail', input: 'file-b.mp4', restart: { policy: 'on-failure' } },
        { id: 'once', input: 'rtsp://h/once', restart: { policy: 'never' } },
        { id: 'flaky', input: 'rtsp://h/flaky', restart: { maxRetries: 2 } },
      ],
    }),
  );
  // Inputs end after 2 frames; "flaky" fails every time. Like the real pipeline, each one
  // says `ended` or `error` before its events end.
  factory = scriptedFactory({ frameMs: 20, maxFrames: 2, finalStatus: true, fail: (s: { id: string }) => (s.id === 'flaky' ? 'connection refused' : undefined) });
  server = await CasaServer.start({ config, pipelineFactory: factory, logger: silentLogger() });
});

afterAll(async () => {
  await server?.close();
  await removeDir(dir);
});

it('restarts, stops or gives up per stream policy', async () => {
  const c = await TestClient.connect(server.port);
  await c.subscribe(['looping', 'onfail', 'once', 'flaky'], { backfill: 10 });
  const created = (id: string) => (factory.created as Array<{ stream: string }>).filter((x) => x.stream === id).length;
  await until(() => created('looping') >= 3, 10_000, 'looping to restart twice');
  await c.waitFor((m) => m.some((x) => x.stream === 'flaky' && x.state === 'error'), 10_000, 'flaky to give up');
  await c.waitFor((m) => m.some((x) => x.stream === 'once' && x.state === 'ended') && m.some((x) => x.stream === 'onfail' && x.state === 'ended'));

  expect(c.of('status', 'looping').some((s) => /^input ended; retrying in \d\.\d s \(retry 1\)$/.test(String(s.reason)))).toBe(true);
  expect(c.of('status', 'once').at(-1)).toMatchObject({ state: 'ended', reason: 'input ended' });
  expect(c.of('status', 'onfail').at(-1)).toMatchObject({ state: 'ended', reason: 'input ended' });
  expect(created('once')).toBe(1);
  expect(created('onfail')).toBe(1);
  const flaky = c.of('status', 'flaky').filter((s) => s.state === 'reconnecting' || s.state === 'error');
  expect(flaky.map((s) => s.reason)).toEqual([
    expect.stringMatching(/^connection refused; retrying in .* \(retry 1\)$/),
    expect.stringMatching(/^connection refused; retrying in .* \(retry 2\)$/),
    'connection refused; gave up after 3 failed attempts',
  ]);
  expect(created('flaky')).toBe(3);
  // `error` means the daemon gave up, `ended` that the stream is over: neither is followed by
  // a restart (docs/protocol.md), whatever the pipeline itself said before it ended.
  for (const id of ['looping', 'onfail', 'once', 'flaky']) {
    const states = c.of('status', id).map((s) => s.state);
    const last = states.findIndex((s) => s === 'ended' || s === 'error');
    expect(last === -1 || last === states.length - 1, `${id}: ${states.join(' ')}`).toBe(true);
  }
  expect(c.of('caption', 'once').length).toBe(2);
  const info = Object.fromEntries(server.manager.list().map((s) => [s.id, s]));
  expect(info.flaky).toMatchObject({ state: 'error', restarts: 2, lastRestartReason: expect.stringMatching(/^connection refused; retrying in .* \(retry 2\)$/) });
  expect(info.looping!.restarts).toBeGreaterThanOrEqual(2);
  expect(info.once!.restarts).toBe(0);
  expect(info.once).toMatchObject({ state: 'ended', captions: 2 });
  await c.close();
});

// The caption pipeline in process (src/pipeline): event order, stats, a Model shared by
// concurrent streams, stop / break with no ffmpeg left, failures (source and model) as an
// `error` status then a typed throw, drops reported with lag; model resolution, the model
// registry and the daemon hooks.
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Model } from '../../src/engine.js';
import { ModelError } from '../../src/errors.js';
import type { UnsequencedEvent } from '../../src/events.js';
import { FileNotFoundError } from '../../src/ingest/index.js';
import { createDaemonHooks, sessionOptionsFrom } from '../../src/pipeline/daemon.js';
import {
  ModelRegistry,
  embeddedModelDir,
  loadModelDir,
  packageRoot,
  resolveModelRef,
} from '../../src/pipeline/models.js';
import { createCaptionPipeline } from '../../src/pipeline/pipeline.js';
import type { ServeConfig } from '../../src/config/schema.js';
import { silentLogger } from '../../src/logger.js';
import { DEV_INSERTION, DEV_MODEL, REPO_ROOT, makeClip, processesMentioning, sleep, tempDir, waitFor } from './helpers.js';

const tmp = tempDir('casa-cli-pipeline-');
let clip: string;
let model: Model;

beforeAll(async () => {
  [clip, model] = await Promise.all([makeClip(path.join(tmp.dir, 'clip.mp4'), 3), loadModelDir(DEV_MODEL)]);
}, 120_000);
afterAll(async () => {
  await model?.release();
  tmp.cleanup();
});

async function collect(events: AsyncIterable<UnsequencedEvent>): Promise<UnsequencedEvent[]> {
  const out: UnsequencedEvent[] = [];
  for await (const ev of events) out.push(ev);
  return out;
}

describe('caption pipeline', () => {
  it('status, then tokens and the caption of each frame, then ended; stats', async () => {
    const p = createCaptionPipeline({ model, input: clip, generation: { seed: 1 } });
    const duration = p.durationSeconds(); // probed while the source runs (for progress bars)
    const events = await collect(p.events);
    expect(events[0]).toEqual({ type: 'status', state: 'connecting', reason: 'opening input', lagMs: 0, droppedFrames: 0 });
    expect(events[1]).toMatchObject({ type: 'status', state: 'live', droppedFrames: 0 });
    expect(events.at(-1)).toMatchObject({ type: 'status', state: 'ended', reason: 'end of input', droppedFrames: 0 });
    const captions = events.filter((e) => e.type === 'caption');
    expect(captions.map((c) => c.frame)).toEqual([0, 1, 2, 3, 4, 5]);
    // Tokens of a frame come before its caption, after the previous caption.
    let frame = 0;
    for (const e of events.slice(2, -1)) {
      if (e.type === 'token') expect(e.frame).toBe(frame);
      else if (e.type === 'caption') frame = e.frame + 1;
      else throw new Error(`unexpected ${e.type} in the middle`);
    }
    const s = p.stats();
    expect(s).toMatchObject({ framesIn: 6, framesDropped: 0, framesCaptioned: 6 });
    expect(await duration).toBeCloseTo(3, 1);
    await p.stop(); // idempotent after the end
    expect(model.sessionCount).toBe(0);
  });

  it('one Model, one session per stream: two streams at once', async () => {
    const a = createCaptionPipeline({ model, input: clip, generation: { seed: 5, temperature: 0 } });
    const b = createCaptionPipeline({ model, input: clip, generation: { seed: 5, temperature: 0 } });
    await Promise.all([a.session, b.session]);
    expect(model.sessionCount).toBe(2);
    const [ea, eb] = await Promise.all([collect(a.events), collect(b.events)]);
    const texts = (ev: UnsequencedEvent[]): string[] => ev.flatMap((e) => (e.type === 'caption' ? [e.text] : []));
    expect(texts(ea)).toHaveLength(6);
    expect(texts(ea)).toEqual(texts(eb)); // independent sessions, same greedy run
    expect(model.sessionCount).toBe(0);
  });

  it('stop() mid-stream and break out of the loop: the stream ends, no ffmpeg left', async () => {
    const long = await makeClip(path.join(tmp.dir, 'long.mp4'), 20);
    const p = createCaptionPipeline({ model, input: long, realtime: true });
    const seen: UnsequencedEvent[] = [];
    for await (const ev of p.events) {
      seen.push(ev);
      if (ev.type === 'caption' && ev.frame === 1) void p.stop();
    }
    expect(seen.at(-1)).toMatchObject({ type: 'status', state: 'ended', reason: 'stopped' });
    expect(seen.filter((e) => e.type === 'caption').length).toBeLessThanOrEqual(3);
    expect(processesMentioning(long)).toEqual([]);

    const q = createCaptionPipeline({ model, input: long, realtime: true });
    for await (const ev of q.events) if (ev.type === 'caption') break;
    await q.stopped;
    expect(processesMentioning(long)).toEqual([]);
    expect(model.sessionCount).toBe(0);
  });

  it('stop() does not wait for a consumer that stopped reading', async () => {
    const p = createCaptionPipeline({ model, input: clip, highWaterMark: 0 });
    const iterator = p.events[Symbol.asyncIterator]();
    await iterator.next(); // connecting; then nobody reads: the producer blocks on the queue
    await waitFor(() => p.stats().framesCaptioned >= 1, 10_000, 'a frame');
    await sleep(200);
    const t0 = Date.now();
    await p.stop();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(processesMentioning(clip)).toEqual([]);
    expect(model.sessionCount).toBe(0);
  });

  it('an input failure: `error` status, then the typed error', async () => {
    const p = createCaptionPipeline({ model, input: path.join(tmp.dir, 'missing.mp4') });
    const seen: UnsequencedEvent[] = [];
    const err = await (async () => {
      try {
        for await (const ev of p.events) seen.push(ev);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(FileNotFoundError);
    expect((err as FileNotFoundError).exitCode).toBe(3);
    expect(seen.at(-1)).toMatchObject({ type: 'status', state: 'error', reason: expect.stringMatching(/missing\.mp4 does not exist/) });
  });

  it('a model that fails to load fails the stream the same way', async () => {
    const p = createCaptionPipeline({ model: Promise.reject(new ModelError('Model bundle directory /x does not exist.')), input: clip });
    const seen: UnsequencedEvent[] = [];
    await expect(
      (async () => {
        for await (const ev of p.events) seen.push(ev);
      })(),
    ).rejects.toBeInstanceOf(ModelError);
    expect(seen).toEqual([{ type: 'status', state: 'error', reason: 'Model bundle directory /x does not exist.', lagMs: 0, droppedFrames: 0 }]);
    await expect(p.session).rejects.toBeInstanceOf(ModelError);
  });

  it('real time with a slow consumer: frames are dropped (newest wins) and reported with the lag', async () => {
    const p = createCaptionPipeline({ model, input: clip, realtime: true, fps: 4, highWaterMark: 0 });
    const seen: UnsequencedEvent[] = [];
    for await (const ev of p.events) {
      seen.push(ev);
      if (ev.type === 'caption') await sleep(500);
    }
    const s = p.stats();
    expect(s.framesDropped).toBeGreaterThan(0);
    expect(s.framesIn + s.framesDropped).toBeGreaterThanOrEqual(10);
    const report = seen.find((e) => e.type === 'status' && e.state === 'live' && e.droppedFrames > 0);
    expect(report).toMatchObject({ reason: expect.stringMatching(/frames? dropped so far/) });
    expect(seen.at(-1)).toMatchObject({ type: 'status', state: 'ended', droppedFrames: s.framesDropped });
    const captions = seen.filter((e) => e.type === 'caption');
    expect(captions.some((c) => c.type === 'caption' && c.latencyMs > 0)).toBe(true);
  });
});

describe('model resolution and registry', () => {
  it('the embedded model sits under the package root, CASA_LIVE_MODEL overrides it', () => {
    expect(packageRoot()).toBe(REPO_ROOT);
    expect(embeddedModelDir({})).toBe(path.join(REPO_ROOT, 'models', 'casa-tiny'));
    expect(embeddedModelDir({ CASA_LIVE_MODEL: 'x/y' })).toBe(path.resolve('x/y'));
    expect(resolveModelRef(undefined, '/base', {})).toBe(path.join(REPO_ROOT, 'models', 'casa-tiny'));
    expect(resolveModelRef('casa-tiny', '/base', { CASA_LIVE_MODEL: DEV_MODEL })).toBe(DEV_MODEL);
    expect(resolveModelRef('./m', '/base', {})).toBe('/base/m');
    expect(resolveModelRef('bundles/dev-casa', path.join(REPO_ROOT, 'test', 'fixtures'), {})).toBe(DEV_MODEL);
    // A bare name: <base>/models/<name> (a directory with a casa.json).
    mkdirSync(path.join(tmp.dir, 'models', 'mine'), { recursive: true });
    copyFileSync(path.join(DEV_MODEL, 'casa.json'), path.join(tmp.dir, 'models', 'mine', 'casa.json'));
    expect(resolveModelRef('mine', tmp.dir, {})).toBe(path.join(tmp.dir, 'models', 'mine'));
    expect(() => resolveModelRef('nope', '/base', {})).toThrow(/Model "nope" was not found \(looked in \/base\/models\/nope/);
  });

  it('loads a bundle once, shares it, forgets failures, releases unused non-pinned models', async () => {
    const loads: string[] = [];
    const released: string[] = [];
    let fail = true;
    const registry = new ModelRegistry({
      idleReleaseMs: 20,
      load: async (dir) => {
        loads.push(dir);
        if (dir.endsWith('bad') && fail) throw new ModelError('bad bundle');
        return { release: async () => void released.push(dir) } as unknown as Model;
      },
    });
    const [m1, m2] = await Promise.all([registry.load('/m/main', true), registry.load('/m/main')]);
    expect(m1).toBe(m2);
    await expect(registry.load('/m/bad')).rejects.toThrow('bad bundle');
    fail = false;
    await registry.load('/m/bad'); // retried
    const lease = registry.acquire('/m/other');
    await lease.model;
    lease.release();
    lease.release(); // once only
    await sleep(60);
    expect(released).toEqual(['/m/other']);
    const pinned = registry.acquire('/m/main');
    pinned.release();
    await sleep(60);
    expect(released).toEqual(['/m/other']);
    expect(loads).toEqual(['/m/main', '/m/bad', '/m/bad', '/m/other']);
    await registry.closeAll();
    expect(released.sort()).toEqual(['/m/bad', '/m/main', '/m/other']);
  });

  it('daemon hooks: prepare loads the config model once; streams get pipelines on it or on their own model', async () => {
    const hooks = createDaemonHooks();
    try {
      const config = { configPath: path.join(REPO_ROOT, 'test', 'fixtures', 'casa-live.yaml'), model: 'bundles/dev-casa' } as unknown as ServeConfig;
      expect(await hooks.prepare(config)).toEqual({ modelName: 'dev-casa' });
      const stream = (id: string, m: string) =>
        ({ id, input: clip, model: m, fps: 2, generation: { temperature: 0, maxNewTokensPerFrame: 3 }, enabled: true, restart: { policy: 'never', initialDelayMs: 0, maxDelayMs: 0 } }) as const;
      const a = hooks.pipelineFactory({ ...stream('a', 'bundles/dev-casa'), generation: { ...stream('a', '').generation } }, { logger: silentLogger() });
      const b = hooks.pipelineFactory(stream('b', DEV_INSERTION), { logger: silentLogger() });
      const [ea, eb] = await Promise.all([collect(a.events), collect(b.events)]);
      for (const ev of [ea, eb]) expect(ev.filter((e) => e.type === 'caption')).toHaveLength(6);
      expect(hooks.registry.loaded.sort()).toEqual([DEV_INSERTION, DEV_MODEL].sort());
    } finally {
      await hooks.registry.closeAll();
    }
  });

  it('maps config generation overrides to session options', () => {
    expect(
      sessionOptionsFrom({ temperature: 0.2, topK: 5, maxNewTokensPerFrame: 9, maxContextTokens: 512, sinkTokens: 4, repetitionPenalty: 1.1, repetitionPenaltyDecay: 0.9, repetitionCountClamp: 3, eosBias: 0.5, seed: -1 }),
    ).toEqual({
      temperature: 0.2,
      topK: 5,
      maxNewTokensPerFrame: 9,
      maxContextTokens: 512,
      sinkTokens: 4,
      repetitionPenalty: 1.1,
      repetitionPenaltyDecay: 0.9,
      repetitionCountClamp: 3,
      eosBias: 0.5,
      seed: 4294967295,
    });
  });
});

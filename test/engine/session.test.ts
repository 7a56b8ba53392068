import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InputError, UsageError } from '../../src/errors.js';
import { Model, type SessionEvent } from '../../src/engine.js';
import { DEV_CASA, devModels, noiseFrame } from './helpers.js';

const models = devModels();

async function collect(it: AsyncIterable<SessionEvent>): Promise<SessionEvent[]> {
  const out: SessionEvent[] = [];
  for await (const ev of it) out.push(ev);
  return out;
}

describe('caption session events', () => {
  for (const which of ['casa', 'insertion'] as const) {
    it(`${which}: token pieces then one caption with timestamps and latency`, async () => {
      const model = models[which];
      const s = await model.openSession({ seed: 11, temperature: 0.7, fps: 4 });
      for (let k = 0; k < 4; k++) {
        const frame = { ...noiseFrame(k), index: 100 + k, ptsSeconds: 50 + k * 0.25, receivedAt: Date.now() - 40 };
        const events = await collect(s.captionFrame(frame));
        const caption = events[events.length - 1];
        expect(caption?.type).toBe('caption');
        if (caption?.type !== 'caption') throw new Error('no caption');
        expect(caption.frame).toBe(100 + k);
        expect(caption.start).toBe(50 + k * 0.25);
        expect(caption.end).toBe(50 + k * 0.25 + 0.25);
        expect(caption.latencyMs).toBeGreaterThanOrEqual(40);
        expect(caption.latencyMs).toBeLessThan(5000);
        const tokens = events.slice(0, -1);
        for (const t of tokens) {
          expect(t.type).toBe('token');
          if (t.type !== 'token') continue;
          expect(t.frame).toBe(100 + k);
          expect(t.pts).toBe(50 + k * 0.25);
          expect(t.text.length).toBeGreaterThan(0);
        }
        // The pieces add up to the caption (random dev weights sample arbitrary bytes, so
        // invalid UTF-8 may show as U+FFFD: the same in the pieces as in the caption).
        const joined = tokens.map((t) => (t.type === 'token' ? t.text : '')).join('');
        expect(joined.trim()).toBe(caption.text);
        expect(Object.keys(caption).sort()).toEqual(['end', 'frame', 'latencyMs', 'start', 'text', 'type']);
      }
      s.close();
    });
  }

  it('greedy is deterministic; sampling is reproducible per seed', async () => {
    const run = async (opts: Parameters<Model['openSession']>[0]) => {
      const s = await models.casa.openSession(opts);
      const out: string[] = [];
      for (let k = 0; k < 4; k++) out.push((await s.caption(noiseFrame(k))).caption.text);
      s.close();
      return out;
    };
    expect(await run({ temperature: 0, seed: 1 })).toEqual(await run({ temperature: 0, seed: 2 }));
    const a = await run({ temperature: 1.0, seed: 5 });
    expect(await run({ temperature: 1.0, seed: 5 })).toEqual(a);
    expect(await run({ temperature: 1.0, seed: 6 })).not.toEqual(a);
  });

  it('respects maxNewTokensPerFrame and feeds EOS when it is hit', async () => {
    const s = await models.casa.openSession({ seed: 2, temperature: 0, maxNewTokensPerFrame: 3, eosBias: -100, greedyProcessors: true });
    const r = await s.caption(noiseFrame(0));
    expect(r.ids.length).toBe(3);
    expect(s.stats().lastFrameTokens).toBe(2 + 3 + 1);
    s.close();
  });

  it('a frame stops at a sampled EOS (no second EOS fed)', async () => {
    const s = await models.casa.openSession({ temperature: 0, eosBias: 1000, greedyProcessors: true });
    const r = await s.caption(noiseFrame(0));
    expect(r.ids).toEqual([]);
    expect(r.caption.text).toBe('');
    expect(r.tokens).toEqual([]);
    expect(s.stats().lastFrameTokens).toBe(3); // markers + EOS
    s.close();
  });

  it('the caption event goes out before EOS is fed, and one EOS closes the window (sampled EOS, token limit, consumer stopping at the caption)', async () => {
    // At the token limit the last sampled token is fed together with EOS, in one step.
    const cases = [
      { opts: { eosBias: 1000 }, sampled: 0, fedAtCaption: 2, stopAtCaption: false },
      { opts: { eosBias: -100, maxNewTokensPerFrame: 3 }, sampled: 3, fedAtCaption: 2 + 2, stopAtCaption: false },
      { opts: { eosBias: -100, maxNewTokensPerFrame: 3 }, sampled: 3, fedAtCaption: 2 + 2, stopAtCaption: true },
    ];
    for (const c of cases) {
      const s = await models.casa.openSession({ temperature: 0, greedyProcessors: true, ...c.opts });
      const before = s.stats().textTokensFed;
      for await (const ev of s.captionFrame(noiseFrame(0))) {
        if (ev.type !== 'caption') continue;
        expect(s.stats().textTokensFed - before).toBe(c.fedAtCaption); // no EOS yet
        if (c.stopAtCaption) break;
      }
      expect(s.stats().textTokensFed - before).toBe(2 + c.sampled + 1);
      expect(s.stats().lastFrameTokens).toBe(2 + c.sampled + 1);
      expect((await s.caption(noiseFrame(1))).caption.type).toBe('caption');
      s.close();
    }
  });

  it('a consumer that stops reading mid-frame: the window is closed with EOS and the session goes on', async () => {
    const s = await models.casa.openSession({ seed: 4, temperature: 0, tokenGranularity: 'piece', maxNewTokensPerFrame: 8, eosBias: -100, greedyProcessors: true });
    const before = s.stats().textTokensFed;
    for await (const ev of s.captionFrame(noiseFrame(0))) {
      expect(ev.type).toBe('token');
      break;
    }
    // markers + the sampled token (its piece was yielded before it was fed) fed with EOS
    expect(s.stats().textTokensFed - before).toBe(2 + 1 + 1);
    expect(s.stats().lastFrameTokens).toBe(4);
    const r = await s.caption(noiseFrame(1));
    expect(r.ids.length).toBe(8);
    s.close();
  });

  it('one frame at a time per session', async () => {
    const s = await models.casa.openSession({ seed: 1 });
    const a = s.captionFrame(noiseFrame(0))[Symbol.asyncIterator]();
    const first = a.next();
    await expect(s.caption(noiseFrame(1))).rejects.toThrow(UsageError);
    await first;
    while (!(await a.next()).done);
    await s.caption(noiseFrame(1));
    s.close();
  });

  it('a malformed frame is refused with an InputError and the session continues', async () => {
    const s = await models.casa.openSession({ seed: 1 });
    const bad = { ...noiseFrame(0), rgb: Buffer.alloc(100) };
    await expect(s.caption(bad)).rejects.toThrow(InputError);
    await expect(s.caption(bad)).rejects.toThrow(/has 100 bytes of rgb24, expected 12288/);
    expect(s.stats().frames).toBe(0);
    await s.caption(noiseFrame(1));
    expect(s.stats().frames).toBe(1);
    s.close();
  });

  it('close() ends the session; model.release() closes the rest', async () => {
    const m = await Model.load(DEV_CASA);
    const s = await m.openSession();
    s.close();
    s.close();
    await expect(s.caption(noiseFrame(0))).rejects.toThrow(/closed/);
    const t = await m.openSession();
    expect(m.sessionCount).toBe(1);
    await m.release();
    expect(t.closed).toBe(true);
    expect(m.sessionCount).toBe(0);
  });

  it('validates options against the bundle', async () => {
    await expect(models.casa.openSession({ maxContextTokens: 90 })).rejects.toThrow(
      'session option maxContextTokens = 90 is too small: the prompt takes 80 tokens (sink 80) and one frame up to 15; use at least 95',
    );
    await expect(models.insertion.openSession({ maxContextTokens: 100 })).rejects.toThrow(/one frame up to 31; use at least 111/);
    await expect(models.casa.openSession({ temperature: -1 })).rejects.toThrow(UsageError);
    await expect(models.casa.openSession({ topK: 1.5 })).rejects.toThrow(/topK/);
    await expect(models.casa.openSession({ seed: -1 })).rejects.toThrow(/seed/);
  });

  it('defaults come from the manifest', async () => {
    const s = await models.casa.openSession({ seed: 9 });
    const g = models.casa.manifest.generation;
    expect(s.options.sampler).toMatchObject({
      temperature: g.temperature,
      topK: g.topK,
      repetitionPenalty: g.repetitionPenalty,
      repetitionPenaltyDecay: g.repetitionPenaltyDecay,
      repetitionCountClamp: g.repetitionCountClamp,
      eosBias: g.eosBias,
      penaltyIgnore: models.casa.manifest.tokens.penaltyIgnore,
      eosId: 3,
      seed: 9,
    });
    expect(s.options.maxNewTokensPerFrame).toBe(12);
    expect(s.options.maxContextTokens).toBe(256);
    expect(s.options.evictChunk).toBe(64);
    expect(s.options.sinkTokens).toBe(80);
    expect(s.options.fps).toBe(2);
    expect(s.stats().seed).toBe(9);
    s.close();
  });
});

describe('preprocessing', () => {
  const pre = () => models.casa.preprocessor();

  it('normalises (x/255 − mean)/std into NCHW like the exporter', async () => {
    const rgb = readFileSync(path.join(DEV_CASA, 'fixtures', 'frame0.rgb'));
    const px = await pre().pixels({ width: 64, height: 64, rgb });
    const plane = 64 * 64;
    for (const i of [0, 1, 777, 4095]) {
      for (let c = 0; c < 3; c++) {
        const x = rgb[i * 3 + c] as number;
        expect(px[c * plane + i]).toBe(Math.fround(Math.fround(Math.fround(x / 255) - 0.5) / 0.25));
      }
    }
  });

  it('resizes other sizes with the fit mode', async () => {
    const w = 100;
    const h = 50;
    const rgb = Buffer.alloc(w * h * 3);
    for (let i = 0; i < w * h; i++) rgb.set([255, 128, 0], i * 3);
    const plane = 64 * 64;
    const red = (255 / 255 - 0.5) / 0.25;
    const black = (0 - 0.5) / 0.25;
    for (const fit of ['fill', 'crop'] as const) {
      const px = await models.casa.preprocessor(fit).pixels({ width: w, height: h, rgb });
      expect(px.length).toBe(3 * plane);
      expect(px.subarray(0, plane).every((v) => Math.abs(v - red) < 1e-6)).toBe(true);
    }
    const lb = await models.casa.preprocessor('letterbox').pixels({ width: w, height: h, rgb });
    expect(lb[0]).toBeCloseTo(black, 5); // top-left: bar
    expect(lb[32 * 64 + 32]).toBeCloseTo(red, 5); // centre: picture
    // a session captions frames of any size
    const s = await models.casa.openSession({ seed: 1, fit: 'letterbox' });
    const r = await s.caption({ index: 0, ptsSeconds: 0, receivedAt: Date.now(), width: w, height: h, rgb });
    expect(r.caption.type).toBe('caption');
    s.close();
  });
});

/**
 * The batched engine (docs/architecture.md §Batching) on real graphs in real worker threads
 * (one worker where a test counts the rows of a run: streams are spread over the workers):
 * a stream's logits and greedy captions are the same whether it runs alone, unbatched, or
 * in a batch with 6 or 63 other streams at other lengths; the batch fixtures of the PyTorch
 * reference hold side by side; the CASA invariants hold on the batched path.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../../src/engine.js';
import { runBatchParity } from '../../src/harness/parity.js';
import { DEV_CASA, ROOT, greedyRun, maxLogitDiff, noiseFrame, noisePixels, type GreedyRecord } from './helpers.js';

const TINY = path.join(ROOT, 'models', 'casa-tiny');

/** The world frames of a bundle's fixtures (session and batch streams) as NCHW pixels. */
async function worldPixels(model: Model): Promise<Float32Array[]> {
  const dir = path.join(model.dir, 'fixtures');
  const pre = model.preprocessor();
  const files = readdirSync(dir).filter((f) => f.endsWith('.rgb')).sort();
  return Promise.all(files.map((f) => pre.pixels({ width: 64, height: 64, rgb: readFileSync(path.join(dir, f)) })));
}

const captions = (r: GreedyRecord, m: Model): string[] => r.frames.map((ids) => m.decode(ids));

describe('batch fixtures: streams of different lengths side by side', () => {
  for (const dir of [DEV_CASA, TINY]) {
    it(`${path.basename(dir)}: every stream within 1e-4 of its PyTorch reference, all in one run`, async () => {
      const r = await runBatchParity(dir, { load: { batch: { workers: 1 } } });
      console.log(`${path.basename(dir)} batch fixtures: ${r.streams} streams, max |Δlogit| ${r.maxAbsDiff.toExponential(2)}, ${r.maxRows} rows in one run`);
      expect(r.streams).toBe(4);
      expect(r.maxRows).toBe(4);
      for (const d of r.perStream) expect(d).toBeLessThanOrEqual(1e-4);
      expect(r.pass).toBe(true);
    });
  }
});

describe('a stream in a batch gets what it gets alone', () => {
  let batched: Model;
  let alone: GreedyRecord;
  let target: Float32Array[];
  let others: Float32Array[];

  beforeAll(async () => {
    const unbatched = await Model.load(TINY, { batch: false });
    target = (await worldPixels(unbatched)).slice(0, 4);
    others = await noisePixels(unbatched, 6, 100);
    alone = await greedyRun(unbatched, unbatched.openBackend({ windowCapacity: 32 }), target, 24);
    await unbatched.release();
    // A long gather window: the streams in step share every run (asserted with maxRows).
    batched = await Model.load(TINY, { batch: { maxSize: 64, gatherMs: 200, workers: 1 } });
  });
  afterAll(async () => {
    await batched?.release();
  });

  it('batch of 1 (the batched engine, the stream alone) = the unbatched engine', async () => {
    const r = await greedyRun(batched, batched.openBackend({ windowCapacity: 32 }), target, 24);
    expect(captions(r, batched)).toEqual(captions(alone, batched));
    const d = maxLogitDiff(r, alone);
    console.log(`batch of 1: max |Δlogit| ${d.toExponential(2)} against the unbatched engine; captions ${JSON.stringify(captions(r, batched))}`);
    expect(d).toBeLessThanOrEqual(1e-4);
  });

  for (const n of [7, 64]) {
    it(`batch of ${n} streams at mixed lengths: the stream's logits within 1e-4, the same greedy captions`, async () => {
      // The other streams first caption 0–4 frames on their own, so that every row of the
      // shared runs has another cache length, window length and position.
      const rest = Array.from({ length: n - 1 }, () => batched.openBackend({ windowCapacity: 32 }));
      await Promise.all(rest.map((b, k) => greedyRun(batched, b, others.slice(0, k % 5), 6)));
      const before = batched.batchStats()!;
      const [mine] = await Promise.all([
        greedyRun(batched, batched.openBackend({ windowCapacity: 32 }), target, 24),
        ...rest.map(async (b, k) => {
          const pre = batched.preprocessor();
          for (let f = 0; f < 4; f++) {
            await b.startFrame(await pre.pixels(noiseFrame(200 + k * 7 + f)), [4, 5]);
            for (let t = 0; t < 1 + ((k + f) % 6); t++) await b.feedText([20 + t]);
            await b.feedText([batched.manifest.tokens.eos]);
            b.endFrame();
          }
          b.close();
        }),
      ]);
      const after = batched.batchStats()!;
      const d = maxLogitDiff(mine!, alone);
      console.log(
        `batch of ${n}: max |Δlogit| ${d.toExponential(2)}; ${after.decoderRuns - before.decoderRuns} decoder runs for ` +
          `${after.decoderRows - before.decoderRows} rows, at most ${after.maxRows} in one run`,
      );
      expect(after.maxRows).toBeGreaterThanOrEqual(n);
      expect(captions(mine!, batched)).toEqual(captions(alone, batched));
      expect(d).toBeLessThanOrEqual(1e-4);
    });
  }
});

describe('more streams than one run holds', () => {
  it('runs of at most maxSize rows (each lane keeping its rows in place) give every stream what it gets alone', async () => {
    const [batched, unbatched] = await Promise.all([Model.load(DEV_CASA, { batch: { maxSize: 4, gatherMs: 50, workers: 1 } }), Model.load(DEV_CASA, { batch: false })]);
    try {
      const run = (m: Model) =>
        Promise.all(
          Array.from({ length: 11 }, async (_, k) => {
            const px = await noisePixels(m, 3 + (k % 3), 10 * k);
            return captions(await greedyRun(m, m.openBackend({ windowCapacity: 32 }), px, 6), m);
          }),
        );
      const [got, want] = [await run(batched), await run(unbatched)];
      expect(got).toEqual(want);
      const st = batched.batchStats()!;
      expect(st.maxRows).toBe(4);
      expect(st.decoderRows / st.decoderRuns).toBeGreaterThan(2);
    } finally {
      await Promise.all([batched.release(), unbatched.release()]);
    }
  });
});

describe('CASA invariants on the batched path', () => {
  it('sessions captioning side by side: text-only KV, the window reset per frame, one image per window', async () => {
    const model = await Model.load(DEV_CASA, { batch: { gatherMs: 50, workers: 1 } });
    try {
      expect(model.engine.batched).toBe(true);
      const N = model.manifest.image.tokensPerFrame;
      const sessions = await Promise.all(Array.from({ length: 6 }, (_, k) => model.openSession({ maxContextTokens: Infinity, seed: k, temperature: 0.8 })));
      const expected = sessions.map(() => model.promptIds.length);
      for (let frame = 0; frame < 5; frame++) {
        const results = await Promise.all(sessions.map((s, k) => s.caption(noiseFrame(frame * 10 + k))));
        results.forEach((r, k) => {
          const frameText = 2 + r.ids.length + 1; // markers, sampled tokens, EOS
          expected[k] = (expected[k] as number) + frameText;
          const st = (sessions[k] as (typeof sessions)[number]).stats();
          expect(st.frames).toBe(frame + 1);
          expect(st.kvTokens).toBe(expected[k]);
          expect(st.textKvTokens).toBe(expected[k]);
          expect(st.textTokensFed).toBe(expected[k]);
          expect(st.imageKvTokens).toBe(0);
          expect(st.windowTokens).toBe(frameText);
          expect(st.lastFrameTokens).toBe(frameText);
          expect(st.imageTokens).toBe(N);
        });
      }
      expect(model.batchStats()!.maxRows).toBe(6);
      for (const s of sessions) s.close();
    } finally {
      await model.release();
    }
  });
});

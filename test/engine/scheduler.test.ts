/**
 * The batched engine's scheduler with real worker threads and the real dev graphs (one
 * worker, so that the streams of a test share its runs): streams
 * joining and leaving between runs, a stream closed while its step waits in the worker, a
 * failing graph run, caps and evictions inside a batch, and frames arriving faster than the
 * batch completes (the pipeline drops them, newest first).
 *
 * The failing run is injected by feeding a token id outside the vocabulary: onnxruntime's
 * embedding Gather refuses it, so the whole run fails, as a real onnxruntime failure would.
 */
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { Model, type SessionOptions } from '../../src/engine.js';
import { FRAME_GATHER_MIN_STREAMS } from '../../src/model/batch/scheduler.js';
import type { UnsequencedEvent } from '../../src/events.js';
import { createCaptionPipeline } from '../../src/pipeline/pipeline.js';
import { makeClip } from '../cli/helpers.js';
import { DEV_CASA, greedyRun, maxLogitDiff, noiseFrame, noisePixels } from './helpers.js';

let unbatched: Model;
beforeAll(async () => {
  unbatched = await Model.load(DEV_CASA, { batch: false });
});
afterAll(async () => {
  await unbatched?.release();
});

/** Greedy captions of `frames` noise frames (from `first`) in a session of `model`. */
async function captionsOf(model: Model, opts: SessionOptions, first: number, frames: number, between?: (k: number) => Promise<void>): Promise<string[]> {
  const s = await model.openSession({ temperature: 0, ...opts });
  const out: string[] = [];
  for (let k = 0; k < frames; k++) {
    out.push((await s.caption(noiseFrame(first + k))).caption.text);
    await between?.(k);
  }
  s.close();
  return out;
}

describe('streams joining and leaving', () => {
  it('a stream that joins mid-way and one that leaves mid-way change nothing for the others', async () => {
    const model = await Model.load(DEV_CASA, { batch: { gatherMs: 20, workers: 1 } });
    try {
      let joined: Promise<string[]> | undefined;
      const a = captionsOf(model, {}, 0, 4); // leaves after 4 frames, while the others go on
      const b = captionsOf(model, {}, 10, 8, async (k) => {
        if (k === 1) joined = captionsOf(model, {}, 20, 6); // joins after b's second frame
      });
      const [ra, rb] = await Promise.all([a, b]);
      const rc = await (joined as Promise<string[]>);
      expect(ra).toEqual(await captionsOf(unbatched, {}, 0, 4));
      expect(rb).toEqual(await captionsOf(unbatched, {}, 10, 8));
      expect(rc).toEqual(await captionsOf(unbatched, {}, 20, 6));
      expect(model.batchStats()!.maxRows).toBeGreaterThanOrEqual(2);
      expect(model.sessionCount).toBe(0);
    } finally {
      await model.release();
    }
  });
});

describe('a session closed while its step waits in the worker', () => {
  it('its step is dropped and rejected; the stream it was waiting with runs at once and correctly', async () => {
    // A long gather window: a step waits for the other stream inside a frame.
    const model = await Model.load(DEV_CASA, { batch: { gatherMs: 60_000, workers: 1 } });
    try {
      const [px] = await noisePixels(model, 1, 7);
      const x = model.openBackend();
      const y = model.openBackend();
      const ref = unbatched.openBackend();
      await Promise.all([x.feedText(model.promptIds), y.feedText(model.promptIds), ref.feedText(model.promptIds)]);
      await Promise.all([x.startFrame(px!, [4, 5]), y.startFrame(px!, [4, 5]), ref.startFrame(px!, [4, 5])]);
      const rowsBefore = model.batchStats()!.decoderRows;
      const waiting = x.feedText([30]); // waits for y, which is inside a frame too
      await new Promise((r) => setTimeout(r, 200));
      expect(model.batchStats()!.decoderRows).toBe(rowsBefore); // still waiting
      x.close();
      await expect(waiting).rejects.toThrow(UsageError);
      await expect(waiting).rejects.toThrow('the session was closed');
      const got = await y.feedText([31]); // alone inside a frame now: runs at once
      const want = await ref.feedText([31]);
      expect(maxLogitDiff({ logits: [got], frames: [] }, { logits: [want], frames: [] })).toBeLessThanOrEqual(1e-4);
      expect(model.batchStats()!.decoderRows).toBe(rowsBefore + 1); // x's step never ran
      await expect(x.feedText([32])).rejects.toThrow('the session was closed');
      y.close();
      ref.close();
    } finally {
      await model.release();
    }
  });
});

describe('a failing graph run', () => {
  it('fails the streams in that run only; the others go on', async () => {
    const model = await Model.load(DEV_CASA, { batch: { gatherMs: 0, workers: 1 } });
    try {
      const V = model.manifest.decoder.vocabSize;
      const [x, y, z] = [model.openBackend(), model.openBackend(), model.openBackend()];
      const ref = unbatched.openBackend();
      await Promise.all([x, y, z, ref].map((b) => b.feedText(model.promptIds)));
      // Made in one turn of the event loop: x's and y's one-token steps share a run, which
      // fails on x's id outside the vocabulary; z's two-token step runs apart.
      const [rx, ry, rz] = await Promise.allSettled([x.feedText([V + 5]), y.feedText([30]), z.feedText([30, 31])]);
      expect(rx.status).toBe('rejected');
      expect(ry.status).toBe('rejected');
      expect(String((ry as PromiseRejectedResult).reason)).toMatch(/onnxruntime failed on a batch of 2 streams: .*indices/i);
      expect(rz.status).toBe('fulfilled');
      const want = await ref.feedText([30, 31]);
      expect(maxLogitDiff({ logits: [(rz as PromiseFulfilledResult<Float32Array>).value], frames: [] }, { logits: [want], frames: [] })).toBeLessThanOrEqual(1e-4);
      await expect(y.feedText([30])).rejects.toThrow(/onnxruntime failed/); // its caches are half updated: it stays failed
      await z.feedText([32]);
      for (const b of [x, y, z, ref]) b.close();
    } finally {
      await model.release();
    }
  });
});

describe('caps and evictions inside a batch', () => {
  it('streams with different caps (pool slots, a larger one, unbounded) evict and re-rotate as they do alone', async () => {
    const model = await Model.load(DEV_CASA, { batch: { gatherMs: 20, workers: 1 } });
    try {
      const caps = [120, 150, 256, 1000, Infinity];
      const run = (m: Model) =>
        Promise.all(
          caps.map(async (cap, k) => {
            const s = await m.openSession({ temperature: 0, maxContextTokens: cap, evictChunk: 16 + k });
            const texts: string[] = [];
            for (let f = 0; f < 14; f++) texts.push((await s.caption(noiseFrame(40 + k * 3 + f))).caption.text);
            const st = s.stats();
            s.close();
            return { texts, kvTokens: st.kvTokens, evictions: st.evictions, evictedTokens: st.evictedTokens, kvBytes: st.kvBytes };
          }),
        );
      const [got, want] = [await run(model), await run(unbatched)];
      expect(got).toEqual(want);
      expect(got[0]!.evictions).toBeGreaterThan(2);
      expect(got[1]!.evictions).toBeGreaterThan(0);
      expect(got[4]!.evictions).toBe(0);
      expect(got[0]!.kvTokens).toBeLessThanOrEqual(120);
      expect(model.batchStats()!.maxRows).toBe(caps.length);
      expect(model.batchStats()!.chainedSteps).toBeGreaterThan(0); // greedy: chained steps between the evictions
      expect(model.batchStats()!.chainedRolledBack).toBe(0);
    } finally {
      await model.release();
    }
  });
});

describe('frames of streams at different phases', () => {
  it('wait for each other (batch.frameGatherMs) and share the frame\'s runs; every caption is the one the stream gets alone', async () => {
    const n = FRAME_GATHER_MIN_STREAMS;
    const model = await Model.load(DEV_CASA, { batch: { frameGatherMs: 2_000, workers: 1 } });
    try {
      const sessions = await Promise.all(Array.from({ length: n }, () => model.openSession({ temperature: 0 })));
      const before = model.batchStats()!;
      // Each stream's frame comes 10 ms after the previous stream's: without the frame wait
      // each would start alone.
      const captions = await Promise.all(
        sessions.map(async (s, k) => {
          await new Promise((r) => setTimeout(r, 10 * k));
          return (await s.caption(noiseFrame(k))).caption.text;
        }),
      );
      const after = model.batchStats()!;
      expect(after.frames - before.frames).toBe(n);
      expect(after.frameRuns - before.frameRuns).toBe(1); // all in one vision run: the last frame released them
      for (const [k, text] of captions.entries()) expect(text).toBe((await captionsOf(unbatched, {}, k, 1))[0]);
      for (const s of sessions) s.close();
    } finally {
      await model.release();
    }
  }, 60_000);
});

describe('frames faster than the batch completes', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'casa-sched-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('the pipeline drops the stale frames (newest wins) and counts them; nothing queues', async () => {
    const clip = await makeClip(path.join(tmp, 'clip.mp4'), 3);
    // Every run waits its full gather window for a stream that sits inside a frame without
    // submitting its next step: each frame takes far longer than the 10 fps input allows.
    const model = await Model.load(DEV_CASA, { batch: { gatherMs: 100, workers: 1 } });
    const stalled = model.openBackend();
    try {
      await stalled.feedText(model.promptIds);
      await stalled.startFrame((await noisePixels(model, 1))[0]!, [4, 5]);
      const p = createCaptionPipeline({ model, input: clip, realtime: true, fps: 10, generation: { temperature: 0, maxNewTokensPerFrame: 4 } });
      const seen: UnsequencedEvent[] = [];
      for await (const ev of p.events) seen.push(ev);
      const s = p.stats();
      const frames = seen.flatMap((e) => (e.type === 'caption' ? [e.frame] : []));
      expect(s.framesDropped).toBeGreaterThan(0);
      expect(s.framesCaptioned).toBe(frames.length);
      expect(s.framesIn).toBe(s.framesCaptioned); // every frame taken was captioned: no queue behind the engine
      expect(s.framesIn + s.framesDropped).toBeGreaterThanOrEqual(20);
      expect(frames).toEqual([...frames].sort((a, b) => a - b)); // in order
      expect(frames.some((f, i) => i > 0 && f - (frames[i - 1] as number) > 1)).toBe(true); // stale ones skipped
      expect(seen.at(-1)).toMatchObject({ type: 'status', state: 'ended', droppedFrames: s.framesDropped });
    } finally {
      stalled.close();
      await model.release();
    }
  }, 120_000);
});

describe('release', () => {
  it('ends the worker threads; a step still waiting is rejected', async () => {
    const model = await Model.load(DEV_CASA, { batch: { gatherMs: 60_000, workers: 2 } });
    expect(model.engine).toMatchObject({ batched: true, workers: 2 });
    const [a, b] = [model.openBackend(), model.openBackend()];
    await Promise.all([a.feedText(model.promptIds), b.feedText(model.promptIds)]);
    expect(model.batchStats()!.streams).toBe(2); // one on each worker
    await model.release();
    await expect(a.feedText([30])).rejects.toThrow(/released/);
    await expect(model.openSession()).rejects.toThrow(/released/);
  });
});

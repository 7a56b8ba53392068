/**
 * Chaining in the batched engine (docs/architecture.md §Batching, Chaining), with real worker threads
 * and the real dev graphs: a worker feeds a greedy stream's likely next step itself; the
 * main thread takes that run's result when its sampler chose the same, and otherwise sends
 * its own step, which rolls the guessed entries back. Whatever the worker guessed, a stream
 * gets what it gets on the unbatched engine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model, type SessionOptions } from '../../src/engine.js';
import { argmax } from '../../src/model/logits.js';
import type { ChainRule } from '../../src/model/batch/protocol.js';
import { DEV_CASA, maxLogitDiff, noiseFrame, noisePixels } from './helpers.js';

let unbatched: Model;
let batched: Model;
beforeAll(async () => {
  unbatched = await Model.load(DEV_CASA, { batch: false });
  batched = await Model.load(DEV_CASA, { batch: { workers: 1 } });
});
afterAll(async () => {
  await Promise.all([unbatched?.release(), batched?.release()]);
});

const close = (a: Float32Array, b: Float32Array): number => maxLogitDiff({ logits: [a], frames: [] }, { logits: [b], frames: [] });

/** Captions (and cache figures) of `frames` noise frames per session, the sessions side by side. */
async function captions(model: Model, opts: SessionOptions[], frames: number): Promise<Array<{ texts: string[]; kvTokens: number; fed: number }>> {
  return Promise.all(
    opts.map(async (o, k) => {
      const s = await model.openSession(o);
      const texts: string[] = [];
      for (let f = 0; f < frames; f++) texts.push((await s.caption(noiseFrame(100 + 7 * k + f))).caption.text);
      const st = s.stats();
      s.close();
      return { texts, kvTokens: st.kvTokens, fed: st.textTokensFed };
    }),
  );
}

/** Waits (bounded) until `done` holds; the counters come with the worker's messages. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
}

/** Counters of the batched model since `before`. */
function since(before: { chainedSteps: number; chainedRolledBack: number }): { chained: number; rolledBack: number } {
  const now = batched.batchStats()!;
  return { chained: now.chainedSteps - before.chainedSteps, rolledBack: now.chainedRolledBack - before.chainedRolledBack };
}

describe('greedy sessions are chained; every caption is the one the unbatched engine gives', () => {
  it('plain greedy: the worker guesses every step, none rolled back', async () => {
    const before = { ...batched.batchStats()! };
    const opts: SessionOptions[] = [{ temperature: 0 }, { temperature: 0, maxNewTokensPerFrame: 3 }, { temperature: 0, maxNewTokensPerFrame: 1 }];
    const [got, want] = [await captions(batched, opts, 6), await captions(unbatched, opts, 6)];
    expect(got).toEqual(want);
    const c = since(before);
    expect(c.rolledBack).toBe(0);
    // Every text step after a frame's first one, the closing step included, was a chained run.
    const fed = got.reduce((n, g) => n + g.texts.length, 0);
    expect(c.chained).toBeGreaterThanOrEqual(fed);
  });

  it('greedy with the sampler\'s processors: a wrong guess is rolled back and the stream goes on as alone', async () => {
    const before = { ...batched.batchStats()! };
    // The repetition penalty and the n-gram ban change the greedy choice; the worker's guess does not apply them.
    const o: SessionOptions = { temperature: 0, greedyProcessors: true, repetitionPenalty: 3, repetitionCountClamp: 5, noRepeatNgramSize: 2, maxNewTokensPerFrame: 8 };
    const [got, want] = [await captions(batched, [o, o], 8), await captions(unbatched, [o, o], 8)];
    expect(got).toEqual(want);
    const c = since(before);
    expect(c.chained).toBeGreaterThan(0);
    expect(c.rolledBack).toBeGreaterThan(0);
  });

  it('a text cut by the real-time deadline: the chained steps after its cut are rolled back', async () => {
    const before = { ...batched.batchStats()! };
    // A deadline of a microsecond: every text ends after its first token, fed with the stop token.
    const o: SessionOptions = { temperature: 0, realtimeDeadline: true, fps: 1e6 };
    const [got, want] = [await captions(batched, [o], 5), await captions(unbatched, [o], 5)];
    expect(got).toEqual(want);
    expect(got[0]!.texts.every((t) => t.length > 0 && !t.includes(' '))).toBe(true);
    expect(since(before).rolledBack).toBeGreaterThanOrEqual(5);
  });

  it('sampling sessions are not chained', async () => {
    const before = { ...batched.batchStats()! };
    const o: SessionOptions = { temperature: 0.7, seed: 11 };
    const [got, want] = [await captions(batched, [o], 4), await captions(unbatched, [o], 4)];
    expect(got).toEqual(want);
    expect(since(before).chained).toBe(0);
  });
});

describe('a chained stream at its backend', () => {
  const rule = (m: Model): ChainRule => ({ tokens: 4, stopIds: [m.manifest.tokens.eos], eosBias: 0, stopBias: 1 });

  it('takes the guessed step, rolls a wrong one back (logits as alone), and closes its frame', async () => {
    const V = batched.manifest.decoder.vocabSize;
    const eos = batched.manifest.tokens.eos;
    const [px] = await noisePixels(batched, 1, 3);
    const x = batched.openBackend({ chain: rule(batched) });
    const ref = unbatched.openBackend();
    await Promise.all([x.feedText(batched.promptIds), ref.feedText(batched.promptIds)]);
    const before = { ...batched.batchStats()! };
    const [a, b] = await Promise.all([x.startFrame(px!, [4, 5]), ref.startFrame(px!, [4, 5])]);
    expect(close(a, b)).toBeLessThanOrEqual(1e-4);
    const guess = argmax(a.subarray(V, 2 * V));
    const other = guess === 30 ? 31 : 30;
    // Meanwhile the worker chains the whole text: 4 single tokens, then the last with the stop token.
    await until(() => since(before).chained >= 5);
    expect(since(before).chained).toBe(5);
    // Not the guess: the 6 chained entries are dropped first.
    const [c, d] = await Promise.all([x.feedText([other]), ref.feedText([other])]);
    expect(close(c, d)).toBeLessThanOrEqual(1e-4);
    expect(since(before).rolledBack).toBe(6);
    // The guess after it: answered by the chained run.
    const g2 = argmax(c.subarray(0, V));
    const [e, f] = await Promise.all([x.feedText([g2]), ref.feedText([g2])]);
    expect(close(e, f)).toBeLessThanOrEqual(1e-4);
    expect(since(before).chained).toBeGreaterThanOrEqual(6);
    // Closing with the stop token, then the next frame: both engines still agree.
    await Promise.all([x.feedText([argmax(e.subarray(0, V)), eos]), ref.feedText([argmax(e.subarray(0, V)), eos])]);
    x.endFrame();
    const pick = ({ kvTokens, windowTokens, nextPosition, textTokensFed }: ReturnType<typeof x.stats>) => ({ kvTokens, windowTokens, nextPosition, textTokensFed });
    expect(pick(x.stats())).toEqual(pick(ref.stats()));
    const [g, h] = await Promise.all([x.startFrame(px!, [4, 5]), ref.startFrame(px!, [4, 5])]);
    expect(close(g, h)).toBeLessThanOrEqual(1e-4);
    expect(x.frameStarts()).toEqual(ref.frameStarts());
    x.close();
    ref.close();
  });

  it('closed while its chained step runs: nothing is left waiting, the stream beside it goes on', async () => {
    const [px] = await noisePixels(batched, 1, 5);
    const x = batched.openBackend({ chain: rule(batched) });
    const y = batched.openBackend({ chain: rule(batched) });
    const ref = unbatched.openBackend();
    await Promise.all([x.feedText(batched.promptIds), y.feedText(batched.promptIds), ref.feedText(batched.promptIds)]);
    const streams = batched.batchStats()!.streams;
    await Promise.all([x.startFrame(px!, [4, 5]), y.startFrame(px!, [4, 5]), ref.startFrame(px!, [4, 5])]);
    x.close(); // its chained step is queued or running
    await expect(x.feedText([30])).rejects.toThrow('the session was closed');
    const [got, want] = await Promise.all([y.feedText([30]), ref.feedText([30])]);
    expect(close(got, want)).toBeLessThanOrEqual(1e-4);
    await new Promise((r) => setTimeout(r, 50));
    expect(batched.batchStats()!.streams).toBe(streams - 1);
    y.close();
    ref.close();
  });
});

/**
 * Random mixes of streams on the batched engine against each stream alone on the unbatched
 * one, with the real dev graphs and real worker threads: for each seed, streams with random
 * cache caps (pool slots, larger, unbounded; evictions), greedy or sampling sessions, the
 * sampler's processors in greedy mode (which make the workers' chained guesses wrong: roll-
 * backs), random pauses between frames (so that different streams share each run), small
 * runs (several lanes per worker) over two workers, and streams leaving at different times,
 * one of them closed in the middle of a frame. Every frame a stream completes must have the
 * caption it gets alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model, type SessionOptions } from '../../src/engine.js';
import { DEV_CASA, noiseFrame } from './helpers.js';

interface Plan {
  opts: SessionOptions;
  first: number;
  frames: number;
  /** Pause (ms) before each frame. */
  pauses: number[];
  /** Closed while its last frame is being captioned (that frame is not compared). */
  closeMidFrame: boolean;
}

/** A seeded LCG in [0, 1). */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

function plans(seed: number, streams: number): Plan[] {
  const rnd = random(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  return Array.from({ length: streams }, (_, k) => {
    const frames = 3 + Math.floor(rnd() * 6);
    const opts: SessionOptions = {
      temperature: pick([0, 0, 0, 0.8]),
      seed: seed * 100 + k,
      // With the processors on, greedy choices the workers' guesses do not foresee: roll-backs.
      greedyProcessors: pick([true, false]),
      repetitionPenalty: pick([1, 1.6, 3]),
      noRepeatNgramSize: pick([0, 2]),
      maxContextTokens: pick([96, 130, 256, Infinity]),
      evictChunk: 8 + Math.floor(rnd() * 24),
      maxNewTokensPerFrame: pick([3, 5, 8]),
    };
    return { opts, first: Math.floor(rnd() * 1000), frames, pauses: Array.from({ length: frames }, () => Math.floor(rnd() * 4)), closeMidFrame: k === 1 };
  });
}

/** The captions of the frames the stream completed (the mid-frame close rejects the last one), and its evictions. */
async function run(model: Model, p: Plan): Promise<{ texts: string[]; evictions: number }> {
  const s = await model.openSession(p.opts);
  const texts: string[] = [];
  for (let f = 0; f < p.frames; f++) {
    await new Promise((resolve) => setTimeout(resolve, p.pauses[f]));
    const last = f === p.frames - 1;
    if (last && p.closeMidFrame) {
      const pending = s.caption(noiseFrame(p.first + f));
      setImmediate(() => s.close());
      await pending.catch(() => undefined);
      break;
    }
    texts.push((await s.caption(noiseFrame(p.first + f))).caption.text);
  }
  const { evictions } = s.stats();
  s.close();
  return { texts, evictions };
}

let unbatched: Model;
let batched: Model;
beforeAll(async () => {
  unbatched = await Model.load(DEV_CASA, { batch: false });
  batched = await Model.load(DEV_CASA, { batch: { workers: 2, maxSize: 3, gatherMs: 1, frameGatherMs: 0 } });
});
afterAll(async () => {
  await Promise.all([unbatched?.release(), batched?.release()]);
});

describe('random mixes of streams on the batched engine', () => {
  it('three seeds: every completed frame has the caption the stream gets alone; runs shared, guesses rolled back, caches evicted', async () => {
    let evictions = 0;
    for (const seed of [1, 2, 3]) {
      const ps = plans(seed, 9);
      const got = await Promise.all(ps.map((p) => run(batched, p)));
      const want: string[][] = [];
      for (const p of ps) want.push((await run(unbatched, p)).texts);
      for (let k = 0; k < ps.length; k++) {
        const n = ps[k]!.closeMidFrame ? ps[k]!.frames - 1 : ps[k]!.frames;
        expect(want[k]).toHaveLength(n);
        expect({ seed, stream: k, texts: got[k]!.texts }).toEqual({ seed, stream: k, texts: want[k] });
      }
      evictions += got.reduce((sum, g) => sum + g.evictions, 0);
    }
    const s = batched.batchStats()!;
    expect(s.maxRows).toBeLessThanOrEqual(3);
    expect(s.decoderRows).toBeGreaterThan(s.decoderRuns); // more than one row per run on average
    expect(s.chainedSteps).toBeGreaterThan(0);
    expect(s.chainedRolledBack).toBeGreaterThan(0);
    expect(evictions).toBeGreaterThan(0);
  });
});

/**
 * Issue 3's long-stream test on the trained embedded model: 2,000 frames of one world
 * stream (test/fixtures/long-stream, written by `python3 -m tools.casa_model stream`)
 * through one session whose context cap is far smaller than the stream's text. Evictions
 * happen, the text KV cache and the session's memory stay bounded, and the captions of
 * the last 200 frames still follow the truth.
 *
 * Issue 3 asks for the last 200 frames within 5 points of eval.json's short-clip figures;
 * both metrics are asserted so (measured: exact 0.920 against 0.965, F1 0.971 against 0.986).
 * The margin on exact match is small and that window's noise is about 2 points: 44 % of its
 * frames show two objects (18 % of eval.json's clips), where the model names the wrong one far
 * more often (tools/casa_model/README.md, "Where the shipped CASA model errs"). Decoding is
 * greedy, so on one bundle the figure does not move from run to run.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runLongStream } from '../../src/harness/long-stream.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BUNDLE = path.join(ROOT, 'models', 'casa-tiny');
const DATA = path.join(ROOT, 'test', 'fixtures', 'long-stream');

describe('long stream on models/casa-tiny', () => {
  it('2,000 frames with a 192-token cap: evictions, bounded memory, captions of the last 200 frames follow the truth', async () => {
    const cap = 192;
    const result = await runLongStream(BUNDLE, path.join(DATA, 'frames.rgb.gz'), path.join(DATA, 'truth.json'), {
      session: { temperature: 0, maxContextTokens: cap, evictChunk: 32 },
      lastFrames: 200,
      tolerancePoints: 5,
    });
    expect(result.frames).toBeGreaterThanOrEqual(2000);
    expect(result.evictions).toBeGreaterThan(10);
    expect(result.maxKvTokens).toBeLessThanOrEqual(cap);
    expect(result.maxKvBytes).toBeLessThanOrEqual(result.kvCapacityBytes);
    const rss = result.memory.map((m) => m.rssBytes);
    const warm = rss.slice(Math.floor(rss.length / 4));
    expect(Math.max(...warm) / Math.min(...warm)).toBeLessThan(1.25);
    console.log(
      `long stream: ${result.frames} frames, ${result.evictions} evictions, last 200 exact ${result.last.frameExactMatch.toFixed(3)} ` +
        `F1 ${result.last.tokenF1.toFixed(3)} vs eval.json ${JSON.stringify(result.reference)}; ${result.msPerFrame.toFixed(1)} ms/frame`,
    );
    expect(result.withinTolerance).toBe(true);
    expect(result.last.tokenF1).toBeGreaterThanOrEqual(result.reference!.tokenF1! - 0.05);
    expect(result.last.frameExactMatch).toBeGreaterThanOrEqual(result.reference!.frameExactMatch! - 0.05);
  }, 240_000);
});

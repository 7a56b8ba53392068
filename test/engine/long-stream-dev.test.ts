/**
 * 2,000 frames through one session with a small context cap (dev bundle, noise frames):
 * evictions happen, the cache never passes the cap, positions stay contiguous, the kept
 * history starts at a frame, and the session's memory stays bounded. (Caption accuracy on
 * a long stream needs the trained bundle and its ground-truth stream: see
 * src/harness/long-stream.ts.)
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { runLongStream, scoreCaptions } from '../../src/harness/long-stream.js';
import { DEV_CASA, DEV_INSERTION, noise } from './helpers.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const work = mkdtempSync(path.join(tmpdir(), 'casa-long-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function writeStream(frames: number, captions: (i: number) => string): { framesPath: string; truthPath: string } {
  const framesPath = path.join(work, `frames-${frames}.rgb`);
  const fd = openSync(framesPath, 'w');
  for (let i = 0; i < frames; i++) writeSync(fd, noise(64 * 64 * 3, i + 1));
  closeSync(fd);
  const truthPath = path.join(work, `truth-${frames}.json`);
  writeFileSync(truthPath, JSON.stringify({ captions: Array.from({ length: frames }, (_, i) => captions(i)) }));
  return { framesPath, truthPath };
}

describe('long stream, small context cap', () => {
  it('2,000 frames: evictions, cap respected, contiguous positions, bounded memory', async () => {
    const FRAMES = 2000;
    const CAP = 112;
    const { framesPath, truthPath } = writeStream(FRAMES, () => '');
    let violations = 0;
    let capacity = -1;
    let capacityChanged = false;
    let badStarts = 0;
    const r = await runLongStream(DEV_CASA, framesPath, truthPath, {
      session: { maxContextTokens: CAP, evictChunk: 16, maxNewTokensPerFrame: 2, temperature: 0 },
      sampleEvery: 250,
      beforeSample: gc,
      evalPath: path.join(work, 'none.json'),
      onFrame: (_i, _c, _t, st) => {
        if (st.kvTokens > CAP || st.nextPosition !== st.kvTokens || st.textKvTokens !== st.kvTokens || st.imageKvTokens !== 0) violations++;
        if (capacity < 0) capacity = st.kvCapacityBytes;
        else if (st.kvCapacityBytes !== capacity) capacityChanged = true;
        if (st.evictions > 0 && st.windowTokens > st.kvTokens) badStarts++;
      },
    });
    expect(r.frames).toBe(FRAMES);
    expect(violations).toBe(0);
    expect(capacityChanged).toBe(false);
    expect(badStarts).toBe(0);
    expect(r.evictions).toBeGreaterThan(50);
    expect(r.maxKvTokens).toBeLessThanOrEqual(CAP);
    expect(r.cap).toBe(CAP);
    // session memory: K/V bytes bounded by the cap (text cache + window + image K/V)
    const perToken = 2 * 4 * 2 * 32 * 4; // k+v · L · KVH · Dh · 4 bytes
    expect(r.maxKvBytes).toBeLessThanOrEqual(CAP * perToken + 2 * 4 * 2 * (16 + 5) * 32 * 4);
    // process memory flat after warm-up (forced GC before each sample)
    const warm = r.memory.find((m) => m.frame >= 500);
    const end = r.memory[r.memory.length - 1];
    if (!warm || !end) throw new Error('no memory samples');
    expect(end.heapUsedBytes - warm.heapUsedBytes).toBeLessThan(8 * 1024 * 1024);
    expect(end.rssBytes - warm.rssBytes).toBeLessThan(64 * 1024 * 1024);
    expect(r.reference).toBeUndefined();
    expect(r.last.frames).toBe(200);
  }, 300_000); // 2,000 frames: a minute alone, several on a loaded 2-core machine (a limit, not a timing assertion)

  it('the kept history starts at a frame right after the sink (casa and insertion)', async () => {
    const { Model } = await import('../../src/engine.js');
    const { noiseFrame } = await import('./helpers.js');
    for (const dir of [DEV_CASA, DEV_INSERTION]) {
      const m = await Model.load(dir);
      const s = await m.openSession({ maxContextTokens: 160, evictChunk: 20, maxNewTokensPerFrame: 4, temperature: 0.9, seed: 3 });
      for (let i = 0; i < 60; i++) {
        await s.caption(noiseFrame(i));
        const st = s.stats();
        expect(st.kvTokens).toBeLessThanOrEqual(160);
        if (st.evictions > 0) expect(s.frameStarts()[0]).toBe(80);
        const starts = s.frameStarts();
        for (let k = 1; k < starts.length; k++) expect(starts[k]).toBeGreaterThan(starts[k - 1] as number);
      }
      expect(s.stats().evictions).toBeGreaterThan(3);
      s.close();
      await m.release();
    }
  });

  it('the harness scores captions like tools/casa_model/evaluate.py and compares with eval.json', async () => {
    expect(scoreCaptions([['a b c', 'a b d'], ['', ''], ['x', 'y z']])).toEqual({
      frames: 3,
      frameExactMatch: 1 / 3,
      precision: 2 / 4,
      recall: 2 / 5,
      tokenF1: (2 * 0.5 * 0.4) / 0.9,
    });
    expect(scoreCaptions([])).toMatchObject({ frameExactMatch: 0, tokenF1: 1 });
    const { framesPath, truthPath } = writeStream(30, (i) => (i % 2 ? 'it stops' : ''));
    const evalPath = path.join(work, 'eval.json');
    writeFileSync(evalPath, JSON.stringify({ frameExactMatch: 0.9, tokenF1: 0.95 }));
    const r = await runLongStream(DEV_CASA, framesPath, truthPath, {
      session: { maxNewTokensPerFrame: 2 },
      lastFrames: 10,
      evalPath,
    });
    expect(r.frames).toBe(30);
    expect(r.last.frames).toBe(10);
    expect(r.reference).toEqual({ frameExactMatch: 0.9, tokenF1: 0.95 });
    expect(r.dropPoints?.frameExactMatch).toBeCloseTo((0.9 - r.last.frameExactMatch) * 100, 9);
    expect(r.withinTolerance).toBe(false); // random weights do not caption
    expect(r.mistakes.length).toBeGreaterThan(0);
    // the same stream gzipped gives the same captions
    const gz = `${framesPath}.gz`;
    writeFileSync(gz, gzipSync(readFileSync(framesPath)));
    const z = await runLongStream(DEV_CASA, gz, truthPath, { session: { maxNewTokensPerFrame: 2 }, lastFrames: 10, evalPath });
    expect(z.frames).toBe(30);
    expect(z.overall).toEqual(r.overall);
    expect(z.mistakes).toEqual(r.mistakes);
    // frames and truth must agree
    const longTruth = path.join(work, 'truth-40.json');
    writeFileSync(longTruth, JSON.stringify({ captions: Array.from({ length: 40 }, () => '') }));
    await expect(runLongStream(DEV_CASA, framesPath, longTruth)).rejects.toThrow(/30 frames for 40 captions/);
  });
});

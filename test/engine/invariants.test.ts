/**
 * CASA invariants on the real graphs (DESIGN §2–§3): the self-attention cache holds text
 * only, the window is emptied at each frame, the insertion twin's cache grows by the image
 * tokens, and cached keys re-rotated by d equal the keys the decoder computes at p + d.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadBundleMeta, openGraphs, releaseGraphs } from '../../src/model/bundle.js';
import { floatTensor } from '../../src/model/graphs.js';
import { inverseFrequencies, rotateVectors, rotationTable } from '../../src/model/rope.js';
import { DEV_CASA, DEV_CASA_V1, DEV_INSERTION, devModels, noiseFrame, parityBundles } from './helpers.js';

const models = devModels();

describe('CASA session invariants', () => {
  it('after k frames the self-attention KV length equals the text tokens fed; no image tokens', async () => {
    const s = await models.casa.openSession({ maxContextTokens: Infinity, seed: 3, temperature: 0.8 });
    const N = models.casa.manifest.image.tokensPerFrame;
    let expected = models.casa.promptIds.length;
    expect(s.stats().kvTokens).toBe(expected);
    expect(s.stats().windowTokens).toBe(expected); // window 0 holds the prompt
    expect(s.stats().imageTokens).toBe(0);
    for (let k = 1; k <= 6; k++) {
      const r = await s.caption(noiseFrame(k - 1));
      const frameText = 2 + r.ids.length + 1; // markers, sampled tokens, EOS
      expected += frameText;
      const st = s.stats();
      expect(st.frames).toBe(k);
      expect(st.textTokensFed).toBe(expected);
      expect(st.kvTokens).toBe(expected);
      expect(st.textKvTokens).toBe(expected);
      expect(st.imageKvTokens).toBe(0);
      expect(st.nextPosition).toBe(expected);
      // window emptied at the frame: it holds this frame's text only
      expect(st.windowTokens).toBe(frameText);
      expect(st.lastFrameTokens).toBe(frameText);
      expect(st.imageTokens).toBe(N);
      expect(st.evictions).toBe(0);
    }
    s.close();
  });

  it('the window is emptied when a frame starts (backend level)', async () => {
    const b = models.casa.openBackend({ policy: { maxTokens: Infinity } });
    const pre = models.casa.preprocessor();
    await b.feedText(models.casa.promptIds);
    expect(b.stats().windowTokens).toBe(80);
    const pixels = await pre.pixels(noiseFrame(0));
    await b.startFrame(pixels, [4, 5]);
    expect(b.stats().windowTokens).toBe(2);
    await b.feedText([303]);
    await b.feedText([3]);
    expect(b.stats().windowTokens).toBe(4);
    await b.startFrame(await pre.pixels(noiseFrame(1)), [4, 5]);
    expect(b.stats().windowTokens).toBe(2);
    expect(b.stats().kvTokens).toBe(80 + 4 + 2);
    expect(b.frameStarts()).toEqual([80, 84]);
    b.close();
  });

  it('the insertion twin: the KV grows by the image tokens of every frame', async () => {
    const s = await models.insertion.openSession({ maxContextTokens: Infinity, seed: 3, temperature: 0.8 });
    const N = models.insertion.manifest.image.tokensPerFrame;
    let text = models.insertion.promptIds.length;
    for (let k = 1; k <= 6; k++) {
      const r = await s.caption(noiseFrame(k - 1));
      text += 2 + r.ids.length + 1;
      const st = s.stats();
      expect(st.textTokensFed).toBe(text);
      expect(st.imageKvTokens).toBe(N * k);
      expect(st.kvTokens).toBe(text + N * k);
      expect(st.textKvTokens).toBe(text);
      expect(st.nextPosition).toBe(st.kvTokens);
      expect(st.windowTokens).toBe(0);
    }
    s.close();
  });

  it('CASA memory stays flat where insertion grows', async () => {
    const c = await models.casa.openSession({ seed: 1, maxNewTokensPerFrame: 2 });
    const i = await models.insertion.openSession({ seed: 1, maxNewTokensPerFrame: 2, maxContextTokens: Infinity });
    for (let k = 0; k < 30; k++) {
      await c.caption(noiseFrame(k));
      await i.caption(noiseFrame(k));
    }
    // per frame: CASA adds its text (≤ 5 tokens); insertion adds 16 image tokens more
    expect(i.stats().kvTokens - c.stats().kvTokens).toBe(30 * 16);
    c.close();
    i.close();
  });
});

describe('re-rotation of cached keys against the real decoder', () => {
  /** keysAt(p): the keys the decoder computes for one token at position p with nothing cached. */
  async function decoderKeys(dir: string) {
    const { manifest, files } = loadBundleMeta(dir);
    const { layers: L, kvHeads: H, headDim: Dh, hiddenSize: D, casaLayers } = manifest.decoder;
    const graphs = await openGraphs(manifest, files);
    const past = { keys: new Float32Array(0), values: new Float32Array(0), dims: [L, 1, H, 0, Dh] };
    const keysAt = async (p: number): Promise<Float32Array> => {
      if (graphs.fusion === 'casa') {
        const C = casaLayers.length;
        const empty = floatTensor(new Float32Array(0), [C, 1, H, 0, Dh]);
        const out = await graphs.decoder.step({
          ids: [303],
          position: p,
          windowPosition: 1,
          past,
          imageKeys: empty,
          imageValues: empty,
          window: { keys: new Float32Array(0), values: new Float32Array(0), dims: [C, 1, H, 0, Dh] },
        });
        return out.newKeys;
      }
      const out = await graphs.decoder.step({
        ids: [303],
        imageEmbeds: floatTensor(new Float32Array(0), [1, 0, D]),
        position: p,
        past,
      });
      return out.newKeys;
    };
    return { manifest, keysAt, release: () => releaseGraphs(graphs) };
  }

  // Dev bundles always (bound 1e-5), trained ones when present (bound 1e-5·max|k|: the graph
  // itself rounds p·θ to float32, so larger keys carry proportionally larger rounding).
  for (const dir of parityBundles()) {
    it(`${path.basename(dir)}: keys at p rotated by d equal the keys at p + d (1e-5)`, async () => {
      const { manifest, keysAt, release } = await decoderKeys(dir);
      const { layers: L, kvHeads: H, headDim: Dh, ropeTheta } = manifest.decoder;
      const inv = inverseFrequencies(Dh, ropeTheta);
      try {
        for (const [p, d] of [
          [150, -64],
          [200, -137],
          [10, 37],
          [255, -175],
        ] as const) {
          const from = await keysAt(p);
          const want = await keysAt(p + d);
          let moved = 0;
          for (let i = 0; i < from.length; i++) moved = Math.max(moved, Math.abs((want[i] as number) - (from[i] as number)));
          expect(moved, 'the rotation is not trivial').toBeGreaterThan(1e-3);
          const t = rotationTable(inv, d);
          rotateVectors(from, 0, L * H, Dh, t.cos, t.sin);
          let max = 0;
          let scale = 1;
          for (let i = 0; i < from.length; i++) {
            max = Math.max(max, Math.abs((from[i] as number) - (want[i] as number)));
            scale = Math.max(scale, Math.abs(want[i] as number));
          }
          const dev = dir === DEV_CASA || dir === DEV_INSERTION || dir === DEV_CASA_V1;
          expect(max, `p=${p} d=${d}`).toBeLessThanOrEqual(dev ? 1e-5 : 1e-5 * scale);
        }
      } finally {
        await release();
      }
    });
  }
});

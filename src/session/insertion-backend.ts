/**
 * Decoder state of the insertion twin (the benchmark's baseline): each frame's image
 * tokens are written into the self-attention cache between the pre- and post-image
 * markers, so the cache grows by N image tokens per frame on top of the text. Same cap
 * and eviction rules as CASA; run it with maxContextTokens = Infinity to see the growth.
 */
import type { Manifest } from '../model/manifest.js';
import { floatTensor, type InsertionGraphs, type OrtTensor, type RunTimer } from '../model/graphs.js';
import { TextKvCache, type ContextPolicy } from '../model/kv-cache.js';
import type { BackendStats, DecoderBackend } from './backend.js';

export class InsertionBackend implements DecoderBackend {
  readonly fusion = 'insertion' as const;
  private readonly cache: TextKvCache;
  private readonly noImage: OrtTensor;
  private readonly vocab: number;
  private fed = 0;

  constructor(
    manifest: Manifest,
    private readonly graphs: InsertionGraphs,
    policy: ContextPolicy,
    invFreq: Float64Array,
    private readonly timer?: RunTimer,
  ) {
    const { layers: L, kvHeads: H, headDim: Dh, hiddenSize: D, vocabSize: V } = manifest.decoder;
    this.cache = new TextKvCache({ layers: L, kvHeads: H, headDim: Dh }, policy, invFreq);
    this.noImage = floatTensor(new Float32Array(0), [1, 0, D]);
    this.vocab = V;
  }

  async feedText(ids: readonly number[]): Promise<Float32Array> {
    this.cache.ensureRoom(ids.length, false);
    return this.step(ids, this.noImage);
  }

  async startFrame(pixels: Float32Array, ids: readonly number[]): Promise<Float32Array> {
    if (ids.length < 2) throw new Error('insertion frame needs the pre- and post-image markers');
    const embeds = await this.graphs.vision.run(pixels, this.timer);
    const n = embeds.dims[1] ?? 0;
    // Room for the whole frame start (marker, image, markers) at once, so any eviction happens at the frame boundary.
    this.cache.ensureRoom(ids.length + n, true);
    this.cache.markFrameStart();
    const V = this.vocab;
    const first = await this.step(ids.slice(0, 1), this.noImage);
    this.cache.markImageTokens(n);
    const second = await this.step(ids.slice(1), embeds);
    // Logits of the text tokens only: the first step's row, then the last T rows of the image step.
    const rows = new Float32Array(ids.length * V);
    rows.set(first.subarray(0, V), 0);
    rows.set(second.subarray(n * V), V);
    return rows;
  }

  private async step(ids: readonly number[], image: OrtTensor): Promise<Float32Array> {
    const n = image.dims[1] ?? 0;
    const out = await this.graphs.decoder.step(
      {
        ids,
        imageEmbeds: image,
        position: this.cache.length,
        past: { keys: this.cache.store.keys(), values: this.cache.store.values(), dims: this.cache.store.dims() },
      },
      this.timer,
    );
    this.cache.append(out.newKeys, out.newValues, n + ids.length);
    this.fed += ids.length;
    return out.logits;
  }

  endFrame(): void {
    // Nothing waits on this stream's steps in the unbatched engine.
  }

  frameStarts(): number[] {
    return this.cache.frameStarts();
  }

  stats(): BackendStats {
    const image = this.cache.imageTokens;
    return {
      kvTokens: this.cache.length,
      textKvTokens: this.cache.length - image,
      imageKvTokens: image,
      windowTokens: 0,
      imageTokens: 0,
      nextPosition: this.cache.length,
      evictions: this.cache.evictions,
      evictedTokens: this.cache.evictedTokens,
      kvBytes: this.cache.store.usedBytes,
      kvCapacityBytes: this.cache.store.allocatedBytes,
      textTokensFed: this.fed,
    };
  }

  close(): void {
    this.cache.store.clear();
  }
}

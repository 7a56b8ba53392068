/**
 * CASA decoder state of one stream (DESIGN §2–§3):
 * - the self-attention cache holds text only, at contiguous positions, capped with eviction;
 * - each CASA layer holds the current frame's image K/V (from casa_kv.onnx, swapped per
 *   frame) and the window's text K/V (emptied per frame; window positions restart at 1).
 */
import type { Manifest } from '../model/manifest.js';
import { floatTensor, type CasaGraphs, type OrtTensor, type RunTimer } from '../model/graphs.js';
import { KvStore, TextKvCache, type ContextPolicy } from '../model/kv-cache.js';
import type { BackendStats, DecoderBackend } from './backend.js';

export class CasaBackend implements DecoderBackend {
  readonly fusion = 'casa' as const;
  private readonly cache: TextKvCache;
  private readonly window: KvStore;
  private imageKeys: OrtTensor;
  private imageValues: OrtTensor;
  private imageCount = 0;
  private fed = 0;

  constructor(
    manifest: Manifest,
    private readonly graphs: CasaGraphs,
    policy: ContextPolicy,
    invFreq: Float64Array,
    /** Window tokens preallocated (the longest frame text); grows if ever exceeded. */
    windowCapacity: number,
    private readonly timer?: RunTimer,
  ) {
    const { layers: L, kvHeads: H, headDim: Dh, casaLayers } = manifest.decoder;
    const C = casaLayers.length;
    this.cache = new TextKvCache({ layers: L, kvHeads: H, headDim: Dh }, policy, invFreq);
    this.window = new KvStore({ layers: C, kvHeads: H, headDim: Dh }, windowCapacity, true);
    // Window 0 (the prompt) has no image: N' = 0.
    const empty = floatTensor(new Float32Array(0), [C, 1, H, 0, Dh]);
    this.imageKeys = empty;
    this.imageValues = empty;
  }

  async feedText(ids: readonly number[]): Promise<Float32Array> {
    this.cache.ensureRoom(ids.length, false);
    return this.step(ids);
  }

  async startFrame(pixels: Float32Array, ids: readonly number[]): Promise<Float32Array> {
    const embeds = await this.graphs.vision.run(pixels, this.timer);
    const { keys, values } = await this.graphs.casaKv.run(embeds, this.timer);
    // Window swap: the frame's image K/V in, the window's text K/V emptied.
    this.imageKeys = keys;
    this.imageValues = values;
    this.imageCount = keys.dims[3] ?? 0;
    this.window.clear();
    this.cache.ensureRoom(ids.length, true);
    this.cache.markFrameStart();
    return this.step(ids);
  }

  private async step(ids: readonly number[]): Promise<Float32Array> {
    const t = ids.length;
    const out = await this.graphs.decoder.step(
      {
        ids,
        position: this.cache.length,
        windowPosition: this.window.length + 1,
        past: { keys: this.cache.store.keys(), values: this.cache.store.values(), dims: this.cache.store.dims() },
        imageKeys: this.imageKeys,
        imageValues: this.imageValues,
        window: { keys: this.window.keys(), values: this.window.values(), dims: this.window.dims() },
      },
      this.timer,
    );
    this.cache.append(out.newKeys, out.newValues, t);
    this.window.append(out.newWindowKeys, out.newWindowValues, t);
    this.fed += t;
    return out.logits;
  }

  endFrame(): void {
    // Nothing waits on this stream's steps in the unbatched engine.
  }

  frameStarts(): number[] {
    return this.cache.frameStarts();
  }

  stats(): BackendStats {
    const imageBytes = (this.imageKeys.data as Float32Array).byteLength + (this.imageValues.data as Float32Array).byteLength;
    return {
      kvTokens: this.cache.length,
      textKvTokens: this.cache.length,
      imageKvTokens: 0,
      windowTokens: this.window.length,
      imageTokens: this.imageCount,
      nextPosition: this.cache.length,
      evictions: this.cache.evictions,
      evictedTokens: this.cache.evictedTokens,
      kvBytes: this.cache.store.usedBytes + this.window.usedBytes + imageBytes,
      kvCapacityBytes: this.cache.store.allocatedBytes + this.window.allocatedBytes + imageBytes,
      textTokensFed: this.fed,
    };
  }

  close(): void {
    this.cache.store.clear();
    this.window.clear();
  }
}

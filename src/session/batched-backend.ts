/**
 * A CASA stream's decoder state in the batched engine (docs/architecture.md §Batching): the
 * K/V live in an inference worker, which runs this stream's steps together with other
 * streams'; this side keeps what the caption protocol needs synchronously — the cache's
 * bookkeeping and eviction decisions (ContextBook), the window and image counts — and the
 * statistics. The caches' contents and positions are the same as the unbatched CasaBackend's.
 */
import type { RunTimer } from '../model/graphs.js';
import { ContextBook, grownCapacity, type ContextPolicy, type Eviction } from '../model/kv-cache.js';
import type { Manifest } from '../model/manifest.js';
import type { StreamChannel } from '../model/batch/pool.js';
import type { BackendStats, DecoderBackend } from './backend.js';

export class BatchedCasaBackend implements DecoderBackend {
  readonly fusion = 'casa' as const;
  private readonly book: ContextBook;
  /** Bytes of one cached token in the self-attention cache (all layers) and in the CASA layers. */
  private readonly tokenBytes: number;
  private readonly casaTokenBytes: number;
  private readonly imageTokensPerFrame: number;
  private readonly poolCapacity: number;
  private windowTokens = 0;
  private windowCapacity: number;
  private imageCount = 0;
  private fed = 0;
  private largest = 0;

  constructor(
    manifest: Manifest,
    private readonly channel: StreamChannel,
    policy: ContextPolicy,
    windowCapacity: number,
    private readonly timer?: RunTimer,
  ) {
    const { layers: L, kvHeads: H, headDim: Dh, casaLayers } = manifest.decoder;
    this.book = new ContextBook(policy);
    this.tokenBytes = 2 * L * H * Dh * 4;
    this.casaTokenBytes = 2 * casaLayers.length * H * Dh * 4;
    this.imageTokensPerFrame = manifest.image.tokensPerFrame;
    this.poolCapacity = manifest.context.maxContextTokens;
    this.windowCapacity = windowCapacity;
  }

  feedText(ids: readonly number[]): Promise<Float32Array> {
    return this.step(ids, this.book.makeRoom(ids.length, false));
  }

  startFrame(pixels: Float32Array, ids: readonly number[]): Promise<Float32Array> {
    const evict = this.book.makeRoom(ids.length, true);
    this.book.markFrameStart();
    // Window swap: the worker swaps the frame's image K/V in and empties the window.
    this.windowTokens = 0;
    this.imageCount = this.imageTokensPerFrame;
    return this.step(ids, evict, pixels.slice());
  }

  endFrame(): void {
    this.channel.endFrame();
  }

  private async step(ids: readonly number[], evict: Eviction | undefined, pixels?: Float32Array): Promise<Float32Array> {
    const t0 = performance.now();
    const logits = await this.channel.step({ ids, position: this.book.length, ...(evict ? { evict } : {}), ...(pixels ? { pixels } : {}) });
    if (this.timer) {
      this.timer.ortMs += performance.now() - t0;
      this.timer.runs += pixels ? 3 : 1; // vision, casa_kv and the decoder
    }
    this.book.grow(ids.length);
    this.windowTokens += ids.length;
    this.windowCapacity = grownCapacity(this.windowCapacity, this.windowTokens);
    this.fed += ids.length;
    this.largest = Math.max(this.largest, this.book.length);
    return logits;
  }

  frameStarts(): number[] {
    return this.book.frameStarts();
  }

  /** The slot's capacity, as the worker allocates it (a pool slot, or storage of its own). */
  private slotCapacity(): number {
    const cap = this.book.policy.maxTokens;
    if (cap <= this.poolCapacity) return this.poolCapacity;
    return Number.isFinite(cap) ? cap : grownCapacity(this.poolCapacity, this.largest);
  }

  stats(): BackendStats {
    const length = this.book.length;
    const imageBytes = this.imageCount * this.casaTokenBytes;
    return {
      kvTokens: length,
      textKvTokens: length,
      imageKvTokens: 0,
      windowTokens: this.windowTokens,
      imageTokens: this.imageCount,
      nextPosition: length,
      evictions: this.book.evictions,
      evictedTokens: this.book.evictedTokens,
      kvBytes: length * this.tokenBytes + this.windowTokens * this.casaTokenBytes + imageBytes,
      kvCapacityBytes: this.slotCapacity() * this.tokenBytes + (this.windowCapacity + this.imageTokensPerFrame) * this.casaTokenBytes,
      textTokensFed: this.fed,
    };
  }

  close(): void {
    this.channel.close();
  }
}

/**
 * Preallocated key/value storage for one group of attention sublayers (the self-attention
 * text cache, or the CASA window cache).
 *
 * The live part is kept contiguous in the exact layout the decoder takes as input,
 * [blocks = layers·kvHeads][length][headDim], at the start of a buffer sized for
 * `capacity` tokens, so building the step's input tensor is a zero-copy view. Appending
 * T tokens moves each block up by (block index)·T·headDim floats with one memmove per
 * block (no allocation); evicting a range moves them back down.
 */
import { rotateVectors, rotationTable } from './rope.js';

export interface KvShape {
  /** Attention sublayers stored (L for the text cache, C for the window cache). */
  layers: number;
  kvHeads: number;
  headDim: number;
}

/** The capacity a growable store takes to hold `needed` tokens: doubling from `capacity` (at least 16). */
export function grownCapacity(capacity: number, needed: number): number {
  let cap = Math.max(16, capacity);
  while (cap < needed) cap *= 2;
  return cap;
}

export class KvStore {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  private readonly blocks: number;
  private cap: number;
  private readonly growable: boolean;
  private keyBuf: Float32Array;
  private valueBuf: Float32Array;
  private len = 0;

  /**
   * @param capacity tokens preallocated
   * @param growable when true the storage doubles when full (unbounded caches, e.g. the
   *   insertion twin run without a cap); otherwise appending past capacity throws.
   */
  constructor(shape: KvShape, capacity: number, growable = false) {
    this.layers = shape.layers;
    this.kvHeads = shape.kvHeads;
    this.headDim = shape.headDim;
    this.blocks = shape.layers * shape.kvHeads;
    this.cap = Math.max(0, Math.floor(capacity));
    this.growable = growable;
    this.keyBuf = new Float32Array(this.blocks * this.cap * this.headDim);
    this.valueBuf = new Float32Array(this.blocks * this.cap * this.headDim);
  }

  /** Tokens stored. */
  get length(): number {
    return this.len;
  }

  get capacity(): number {
    return this.cap;
  }

  /** Bytes of the tokens stored (keys and values). */
  get usedBytes(): number {
    return 2 * this.blocks * this.len * this.headDim * 4;
  }

  /** Bytes allocated (keys and values). */
  get allocatedBytes(): number {
    return this.keyBuf.byteLength + this.valueBuf.byteLength;
  }

  /** Keys of the stored tokens as [layers, 1, kvHeads, length, headDim] (a view; valid until the next change). */
  keys(): Float32Array {
    return this.keyBuf.subarray(0, this.blocks * this.len * this.headDim);
  }

  values(): Float32Array {
    return this.valueBuf.subarray(0, this.blocks * this.len * this.headDim);
  }

  /** Dims of the input tensor for the stored tokens. */
  dims(): number[] {
    return [this.layers, 1, this.kvHeads, this.len, this.headDim];
  }

  clear(): void {
    this.len = 0;
  }

  /**
   * Appends `count` tokens taken from a step output laid out [layers, 1, kvHeads, srcTokens,
   * headDim], starting at token `srcStart` of each block (all of them by default).
   */
  append(newKeys: Float32Array, newValues: Float32Array, srcTokens: number, srcStart = 0, count = srcTokens - srcStart): void {
    if (count <= 0) return;
    const expected = this.blocks * srcTokens * this.headDim;
    if (newKeys.length !== expected || newValues.length !== expected) {
      throw new Error(`kv append: got ${newKeys.length} floats, expected ${expected}`);
    }
    if (this.len + count > this.cap) this.grow(this.len + count);
    const dh = this.headDim;
    const p = this.len;
    const q = p + count;
    // Move blocks up, last first (block b goes from b·p·dh to b·q·dh).
    for (let b = this.blocks - 1; b >= 1; b--) {
      const src = b * p * dh;
      const dst = b * q * dh;
      this.keyBuf.copyWithin(dst, src, src + p * dh);
      this.valueBuf.copyWithin(dst, src, src + p * dh);
    }
    for (let b = 0; b < this.blocks; b++) {
      const src = (b * srcTokens + srcStart) * dh;
      const dst = (b * q + p) * dh;
      this.keyBuf.set(newKeys.subarray(src, src + count * dh), dst);
      this.valueBuf.set(newValues.subarray(src, src + count * dh), dst);
    }
    this.len = q;
  }

  /**
   * Removes tokens [start, start + count) from every block; the tokens after them move
   * down to `start`. When `invFreq` is given, the moved keys are re-rotated by −count
   * positions so that their rotary positions stay contiguous (DESIGN §3.5).
   */
  evict(start: number, count: number, invFreq?: Float64Array): void {
    if (count <= 0) return;
    if (start < 0 || start + count > this.len) throw new Error(`kv evict: [${start}, ${start + count}) outside [0, ${this.len})`);
    const dh = this.headDim;
    const p = this.len;
    const q = p - count;
    const tail = p - start - count;
    const table = invFreq && tail > 0 ? rotationTable(invFreq, -count) : undefined;
    for (let b = 0; b < this.blocks; b++) {
      const src = b * p * dh;
      const dst = b * q * dh;
      if (b > 0) {
        this.keyBuf.copyWithin(dst, src, src + start * dh);
        this.valueBuf.copyWithin(dst, src, src + start * dh);
      }
      const tailSrc = src + (start + count) * dh;
      this.keyBuf.copyWithin(dst + start * dh, tailSrc, tailSrc + tail * dh);
      this.valueBuf.copyWithin(dst + start * dh, tailSrc, tailSrc + tail * dh);
      if (table) rotateVectors(this.keyBuf, dst + start * dh, tail, dh, table.cos, table.sin);
    }
    this.len = q;
  }

  private grow(needed: number): void {
    if (!this.growable) throw new Error(`kv cache full: ${needed} tokens needed, capacity ${this.cap}`);
    const cap = grownCapacity(this.cap, needed);
    const keys = new Float32Array(this.blocks * cap * this.headDim);
    const values = new Float32Array(this.blocks * cap * this.headDim);
    // The live part is contiguous at the start: a plain copy keeps the layout.
    keys.set(this.keys());
    values.set(this.values());
    this.keyBuf = keys;
    this.valueBuf = values;
    this.cap = cap;
  }
}

/** Cap and eviction settings of a text cache (DESIGN §3.5). */
export interface ContextPolicy {
  /** Most tokens the cache holds (Infinity: unbounded, storage grows). */
  maxTokens: number;
  /** Tokens at the start that are never evicted (the prompt). */
  sinkTokens: number;
  /** Least number of tokens evicted at once. */
  evictChunk: number;
}

interface FrameSpan {
  /** Cache index of the frame's pre-image marker. */
  start: number;
  /** Cache index of the frame's first image token (insertion) and how many there are. */
  imageStart: number;
  imageTokens: number;
}

/** A range of cache entries to evict: [start, start + count). */
export interface Eviction {
  start: number;
  count: number;
}

/**
 * The bookkeeping of one stream's self-attention cache, without the storage: its length,
 * where frames start, and the eviction policy (DESIGN §3.5). The unbatched engine pairs it
 * with a KvStore (TextKvCache); the batched engine keeps it on the main thread and sends the
 * evictions it decides to the worker that holds the stream's K/V.
 */
export class ContextBook {
  readonly policy: ContextPolicy;
  private frames: FrameSpan[] = [];
  private len = 0;
  private evictionCount = 0;
  private evictedTotal = 0;
  private imageInCache = 0;

  constructor(policy: ContextPolicy) {
    this.policy = policy;
  }

  get length(): number {
    return this.len;
  }
  get evictions(): number {
    return this.evictionCount;
  }
  get evictedTokens(): number {
    return this.evictedTotal;
  }
  get imageTokens(): number {
    return this.imageInCache;
  }
  /** Cache indices of the frames' pre-image markers still in the cache. */
  frameStarts(): number[] {
    return this.frames.map((f) => f.start);
  }

  /**
   * Plans room for a step of `tokens` new entries: the range to evict when the cap would be
   * passed (already taken out of the bookkeeping), else undefined. `frameStart`: the step
   * begins a new frame (so the current end is a frame boundary).
   */
  makeRoom(tokens: number, frameStart: boolean): Eviction | undefined {
    const p = this.len;
    const { maxTokens, sinkTokens: sink, evictChunk } = this.policy;
    if (p + tokens <= maxTokens) return undefined;
    const need = p + tokens - maxTokens;
    const least = Math.max(evictChunk, need);
    const boundaries = this.frames.map((f) => f.start).filter((s) => s > sink);
    if (frameStart && p > sink) boundaries.push(p);
    // The kept history starts at a frame: the first boundary at least `least` past the sink,
    // else the furthest one that frees enough, else (a frame longer than the cap allows) a cut.
    let cut = boundaries.find((s) => s - sink >= least);
    if (cut === undefined) {
      const enough = boundaries.filter((s) => s - sink >= need);
      cut = enough.length ? enough[enough.length - 1] : undefined;
    }
    const count = cut !== undefined ? cut - sink : Math.min(p - sink, least);
    if (count < need) {
      throw new Error(
        `context cap ${maxTokens} too small: ${p} tokens cached, sink ${sink}, step of ${tokens} tokens`,
      );
    }
    this.forget(sink, count);
    return { start: sink, count };
  }

  /** Records that the next appended token is a frame's pre-image marker. */
  markFrameStart(): void {
    const start = this.len;
    this.frames.push({ start, imageStart: start, imageTokens: 0 });
  }

  /** Records that the next `count` appended entries are the current frame's image tokens. */
  markImageTokens(count: number): void {
    const f = this.frames[this.frames.length - 1];
    if (!f) return;
    f.imageStart = this.len;
    f.imageTokens = count;
    this.imageInCache += count;
  }

  /** Records `count` entries appended. */
  grow(count: number): void {
    this.len += count;
  }

  private forget(start: number, count: number): void {
    const end = start + count;
    const kept: FrameSpan[] = [];
    for (const f of this.frames) {
      const lo = Math.max(start, f.imageStart);
      const hi = Math.min(end, f.imageStart + f.imageTokens);
      const cutImage = Math.max(0, hi - lo);
      this.imageInCache -= cutImage;
      if (f.start < start) {
        kept.push(f);
      } else if (f.start >= end) {
        kept.push({ start: f.start - count, imageStart: f.imageStart - count, imageTokens: f.imageTokens });
      } else if (f.imageStart + f.imageTokens > end) {
        // frame cut in the middle: its marker is gone, the rest of its image stays
        const remaining = f.imageStart + f.imageTokens - Math.max(end, f.imageStart);
        kept.push({ start: start, imageStart: start, imageTokens: remaining });
      }
    }
    this.frames = kept;
    this.len -= count;
    this.evictionCount += 1;
    this.evictedTotal += count;
  }
}

/**
 * The self-attention cache of one stream in the unbatched engine: a KvStore plus its
 * ContextBook. Positions are contiguous: the next token always takes position `length`.
 */
export class TextKvCache {
  readonly store: KvStore;
  readonly book: ContextBook;
  private readonly invFreq: Float64Array;

  constructor(shape: KvShape, policy: ContextPolicy, invFreq: Float64Array, initialCapacity = 256) {
    this.book = new ContextBook(policy);
    this.invFreq = invFreq;
    const bounded = Number.isFinite(policy.maxTokens);
    this.store = new KvStore(shape, bounded ? policy.maxTokens : initialCapacity, !bounded);
  }

  get policy(): ContextPolicy {
    return this.book.policy;
  }
  get length(): number {
    return this.store.length;
  }
  get evictions(): number {
    return this.book.evictions;
  }
  get evictedTokens(): number {
    return this.book.evictedTokens;
  }
  get imageTokens(): number {
    return this.book.imageTokens;
  }
  /** Cache indices of the frames' pre-image markers still in the cache. */
  frameStarts(): number[] {
    return this.book.frameStarts();
  }

  /**
   * Makes room for a step of `tokens` new entries, evicting when the cap would be passed.
   * `frameStart`: the step begins a new frame (so the current end is a frame boundary).
   * Returns the number of tokens evicted (0 when there was room).
   */
  ensureRoom(tokens: number, frameStart: boolean): number {
    const cut = this.book.makeRoom(tokens, frameStart);
    if (!cut) return 0;
    this.store.evict(cut.start, cut.count, this.invFreq);
    return cut.count;
  }

  /** Records that the next appended token is a frame's pre-image marker. */
  markFrameStart(): void {
    this.book.markFrameStart();
  }

  /** Records that the next `count` appended entries are the current frame's image tokens. */
  markImageTokens(count: number): void {
    this.book.markImageTokens(count);
  }

  append(newKeys: Float32Array, newValues: Float32Array, srcTokens: number): void {
    this.store.append(newKeys, newValues, srcTokens);
    this.book.grow(srcTokens);
  }
}

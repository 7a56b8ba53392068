/**
 * K/V storage of the batched engine's worker (docs/architecture.md §Batching).
 *
 * A stream's self-attention cache lives in a *slot*: per layer, [KVH][capacity][Dh] floats
 * at a fixed stride, so appending T tokens writes T rows per head and moves nothing, and
 * evicting moves only the kept tail of each head down (re-rotating its keys). Slots of the
 * model's default capacity are preallocated in one array per layer (`SlotPool`, a slot
 * table as llama.cpp's server keeps): a stream joining or leaving takes or returns an index,
 * without allocating. A stream whose cap is larger, or unbounded, gets storage of its own
 * (`StridedKv` with private arrays), which doubles when full.
 *
 * Before a graph run the batch's rows are copied into the decoder's [B, KVH, P, Dh] inputs
 * (`gather`); afterwards each row's new entries are appended from the [layers, B, KVH, T, Dh]
 * outputs (`appendRow`).
 */
import { rotateVectors, rotationTable } from '../rope.js';
import { grownCapacity, type KvShape } from '../kv-cache.js';

/** Copies n floats (a plain loop for the short copies of a step's new tokens: no view objects). */
function copyFloats(dst: Float32Array, at: number, src: Float32Array, from: number, n: number): void {
  if (n > 64) {
    dst.set(src.subarray(from, from + n), at);
    return;
  }
  for (let i = 0; i < n; i++) dst[at + i] = src[from + i] as number;
}

export class StridedKv {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  private keyArrays: Float32Array[];
  private valueArrays: Float32Array[];
  private base: number;
  private cap: number;
  private readonly growable: boolean;
  private len = 0;
  private ver = 0;

  /**
   * Storage of `capacity` tokens: its own arrays, or (`arrays`) a region of shared ones
   * starting at `base` in each layer's array.
   */
  constructor(
    shape: KvShape,
    capacity: number,
    growable: boolean,
    arrays?: { keys: Float32Array[]; values: Float32Array[]; base: number },
  ) {
    this.layers = shape.layers;
    this.kvHeads = shape.kvHeads;
    this.headDim = shape.headDim;
    this.cap = capacity;
    this.growable = growable;
    const own = (): Float32Array[] => Array.from({ length: shape.layers }, () => new Float32Array(shape.kvHeads * capacity * shape.headDim));
    this.keyArrays = arrays?.keys ?? own();
    this.valueArrays = arrays?.values ?? own();
    this.base = arrays?.base ?? 0;
  }

  get length(): number {
    return this.len;
  }

  get capacity(): number {
    return this.cap;
  }

  /** Changes whenever stored entries move or are dropped (appending does not change it). */
  get version(): number {
    return this.ver;
  }

  clear(): void {
    this.len = 0;
    this.ver++;
  }

  /** Drops the entries from `length` on (a chained step's, rolled back). */
  truncate(length: number): void {
    if (length < 0 || length > this.len) throw new Error(`kv truncate: ${length} outside [0, ${this.len}]`);
    if (length === this.len) return;
    this.len = length;
    this.ver++;
  }

  /**
   * Appends row `row`'s entries of a step output laid out [layers, rows, KVH, tokens, Dh]:
   * `count` of them from token `from` (all by default).
   */
  appendRow(keys: Float32Array, values: Float32Array, rows: number, row: number, tokens: number, from = 0, count = tokens - from): void {
    if (count <= 0) return;
    if (this.len + count > this.cap) this.grow(this.len + count);
    const { kvHeads: h, headDim: dh } = this;
    for (let l = 0; l < this.layers; l++) {
      const dk = this.keyArrays[l] as Float32Array;
      const dv = this.valueArrays[l] as Float32Array;
      for (let k = 0; k < h; k++) {
        const src = (((l * rows + row) * h + k) * tokens + from) * dh;
        const dst = this.base + (k * this.cap + this.len) * dh;
        copyFloats(dk, dst, keys, src, count * dh);
        copyFloats(dv, dst, values, src, count * dh);
      }
    }
    this.len += count;
  }

  /**
   * Removes entries [start, start + count); the later ones move down. With `invFreq` the
   * moved keys are re-rotated by −count positions (DESIGN §3.5), as KvStore.evict does.
   */
  evict(start: number, count: number, invFreq?: Float64Array): void {
    if (count <= 0) return;
    if (start < 0 || start + count > this.len) throw new Error(`kv evict: [${start}, ${start + count}) outside [0, ${this.len})`);
    const { kvHeads: h, headDim: dh } = this;
    const tail = this.len - start - count;
    const table = invFreq && tail > 0 ? rotationTable(invFreq, -count) : undefined;
    for (let l = 0; l < this.layers; l++) {
      for (let k = 0; k < h; k++) {
        const block = this.base + k * this.cap * dh;
        const dst = block + start * dh;
        const src = dst + count * dh;
        (this.keyArrays[l] as Float32Array).copyWithin(dst, src, src + tail * dh);
        (this.valueArrays[l] as Float32Array).copyWithin(dst, src, src + tail * dh);
        if (table) rotateVectors(this.keyArrays[l] as Float32Array, dst, tail, dh, table.cos, table.sin);
      }
    }
    this.len -= count;
    this.ver++;
  }

  /**
   * Copies the stored entries into row `row` of batch inputs: per layer l, `keys[l]` and
   * `values[l]` laid out [B, KVH, size, Dh] from offset `offset` (size ≥ length; the rest of
   * the row is left as it is).
   */
  gather(keys: readonly Float32Array[], values: readonly Float32Array[], offset: number, row: number, size: number): void {
    const { kvHeads: h, headDim: dh } = this;
    const n = this.len * dh;
    for (let l = 0; l < this.layers; l++) {
      const sk = this.keyArrays[l] as Float32Array;
      const sv = this.valueArrays[l] as Float32Array;
      const dk = keys[l] as Float32Array;
      const dv = values[l] as Float32Array;
      for (let k = 0; k < h; k++) {
        const src = this.base + k * this.cap * dh;
        const dst = offset + ((row * h + k) * size) * dh;
        dk.set(sk.subarray(src, src + n), dst);
        dv.set(sv.subarray(src, src + n), dst);
      }
    }
  }

  /** Bytes allocated for this storage (its share of a pool's arrays). */
  get allocatedBytes(): number {
    return 2 * this.layers * this.kvHeads * this.cap * this.headDim * 4;
  }

  private grow(needed: number): void {
    if (!this.growable) throw new Error(`kv cache full: ${needed} tokens needed, capacity ${this.cap}`);
    const cap = grownCapacity(this.cap, needed);
    const { kvHeads: h, headDim: dh } = this;
    const move = (arrays: Float32Array[]): Float32Array[] =>
      arrays.map((old) => {
        const next = new Float32Array(h * cap * dh);
        for (let k = 0; k < h; k++) {
          const src = this.base + k * this.cap * dh;
          next.set(old.subarray(src, src + this.len * dh), k * cap * dh);
        }
        return next;
      });
    this.keyArrays = move(this.keyArrays);
    this.valueArrays = move(this.valueArrays);
    this.base = 0;
    this.cap = cap;
    this.ver++;
  }
}

/**
 * Slots of one capacity in one preallocated array per layer (keys and values), handed out
 * by index. Full, the pool adds a segment of as many slots again (the slots in use stay
 * where they are); a returned slot is reused by the next stream.
 */
export class SlotPool {
  private readonly shape: KvShape;
  readonly slotCapacity: number;
  private readonly segmentSlots: number;
  private readonly free: StridedKv[] = [];
  private segments = 0;

  constructor(shape: KvShape, slotCapacity: number, segmentSlots: number) {
    this.shape = shape;
    this.slotCapacity = slotCapacity;
    this.segmentSlots = Math.max(1, segmentSlots);
  }

  /** Slots allocated (in use or free). */
  get slots(): number {
    return this.segments * this.segmentSlots;
  }

  acquire(): StridedKv {
    if (this.free.length === 0) this.addSegment();
    const slot = this.free.pop() as StridedKv;
    slot.clear();
    return slot;
  }

  release(slot: StridedKv): void {
    slot.clear();
    this.free.push(slot);
  }

  private addSegment(): void {
    const { layers, kvHeads, headDim } = this.shape;
    const per = kvHeads * this.slotCapacity * headDim;
    const make = (): Float32Array[] => Array.from({ length: layers }, () => new Float32Array(per * this.segmentSlots));
    const keys = make();
    const values = make();
    // Handed out from the lowest index: the last pushed is popped first.
    for (let i = this.segmentSlots - 1; i >= 0; i--) {
      this.free.push(new StridedKv(this.shape, this.slotCapacity, false, { keys, values, base: i * per }));
    }
    this.segments += 1;
  }
}

interface ResidentRow {
  kv: StridedKv;
  version: number;
  length: number;
}

/**
 * A batch input of the decoder ([B, KVH, size, Dh] per layer) kept between graph runs. A
 * row whose stream's storage has only grown, since, by the entries written here too, stays
 * where it is and is not copied again: streams that run together step after step (the gather
 * rule keeps a frame's streams in step) cost the copy of their new entries only.
 *
 * `size` (the input's entry axis) is the longest row plus `headroom` spare entries, so that
 * appends do not change the layout, but never more than the rows' storage can hold (a capped
 * cache evicts before it grows past its capacity). A run reads every row's whole `size`
 * entries, padding included, and at 32–64 rows those reads are most of a decoder run's time
 * (docs/architecture.md §Batching, "Copies"): so when the longest row has shrunk (an eviction,
 * or the longest stream left) and the padding is over twice the headroom, the rows are laid
 * out again at the smaller size.
 */
export class ResidentInput {
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private rows: ResidentRow[] = [];
  private readonly index = new Map<StridedKv, number>();
  private size = 0;

  constructor(
    private readonly layers: number,
    private readonly kvHeads: number,
    private readonly headDim: number,
    private readonly headroom: number,
  ) {}

  /** Where `kv` already sits, up to date (such rows go first, in this order), else Infinity. */
  rank(kv: StridedKv): number {
    const i = this.index.get(kv);
    return i !== undefined && this.valid(i, kv) ? i : Infinity;
  }

  /** Lays the storages out as rows 0…B−1; returns the per-layer inputs and their entry size. */
  prepare(kvs: readonly StridedKv[]): { keys: Float32Array[]; values: Float32Array[]; size: number } {
    let longest = 0;
    let bound = 0;
    for (const kv of kvs) {
      longest = Math.max(longest, kv.length);
      bound = Math.max(bound, kv.capacity);
    }
    const fits = longest <= this.size && this.size <= longest + 2 * this.headroom;
    if (!fits) {
      this.size = Math.min(longest + this.headroom, bound);
      this.rows = [];
    }
    this.reserve(kvs.length);
    const next: ResidentRow[] = [];
    kvs.forEach((kv, i) => {
      if (!(this.rows[i]?.kv === kv && this.valid(i, kv))) kv.gather(this.keys, this.values, 0, i, this.size);
      next.push({ kv, version: kv.version, length: kv.length });
    });
    this.rows = next;
    this.index.clear();
    kvs.forEach((kv, i) => this.index.set(kv, i));
    const n = kvs.length * this.kvHeads * this.size * this.headDim;
    return { keys: this.keys.map((a) => a.subarray(0, n)), values: this.values.map((a) => a.subarray(0, n)), size: this.size };
  }

  /** After the run: each row's new entries (as the storages got them), [layers, B, KVH, tokens, Dh]. */
  appendRows(keys: Float32Array, values: Float32Array, tokens: number): void {
    const { kvHeads: h, headDim: dh } = this;
    const b = this.rows.length;
    this.rows.forEach((r, i) => {
      if (r.length + tokens > this.size) {
        r.version = -1; // no room: copied again next time
        return;
      }
      for (let l = 0; l < this.layers; l++) {
        for (let k = 0; k < h; k++) {
          const src = ((l * b + i) * h + k) * tokens * dh;
          const dst = ((i * h + k) * this.size + r.length) * dh;
          copyFloats(this.keys[l] as Float32Array, dst, keys, src, tokens * dh);
          copyFloats(this.values[l] as Float32Array, dst, values, src, tokens * dh);
        }
      }
      r.length += tokens;
    });
  }

  private valid(i: number, kv: StridedKv): boolean {
    const r = this.rows[i] as ResidentRow;
    return r.version === kv.version && r.length === kv.length;
  }

  /** Room for `rows` rows at the current size; rows in place keep their contents. */
  private reserve(rows: number): void {
    const need = rows * this.kvHeads * this.size * this.headDim;
    if (this.keys.length === this.layers && (this.keys[0] as Float32Array).length >= need) return;
    const grow = (old: Float32Array[]): Float32Array[] =>
      Array.from({ length: this.layers }, (_, l) => {
        const a = new Float32Array(Math.max(need, Math.ceil((old[l]?.length ?? 0) * 1.5)));
        if (old[l]) a.set((old[l] as Float32Array).subarray(0, Math.min(a.length, (old[l] as Float32Array).length)));
        return a;
      });
    this.keys = grow(this.keys);
    this.values = grow(this.values);
  }
}

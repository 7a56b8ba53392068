/**
 * Thin typed wrappers over the bundle's onnxruntime sessions (docs/model-format.md).
 * They build the input tensors (zero-copy views where possible), run the graph and hand
 * back the outputs as typed arrays. The time spent inside onnxruntime's `run` is added
 * to an optional RunTimer, so the engine's own overhead can be measured apart.
 */
import { Tensor, type InferenceSession } from 'onnxruntime-node';
import { ModelError } from '../errors.js';
import { cacheInputName, type CacheName } from './manifest.js';

export type OrtSession = InferenceSession;
export type OrtTensor = Tensor;

export interface RunTimer {
  /** Milliseconds spent awaiting onnxruntime's run. */
  ortMs: number;
  /** onnxruntime runs. */
  runs: number;
}

export function newRunTimer(): RunTimer {
  return { ortMs: 0, runs: 0 };
}

export function floatTensor(data: Float32Array, dims: readonly number[]): OrtTensor {
  return new Tensor('float32', data, dims);
}

/** An int64 [1, T] tensor of consecutive values start, start + 1, … */
export function rangeTensor(start: number, count: number): OrtTensor {
  return new Tensor('int64', int64Range(start, count), [1, count]);
}

export function idsTensor(ids: readonly number[]): OrtTensor {
  return new Tensor('int64', int64(ids), [1, ids.length]);
}

async function timedRun(
  session: OrtSession,
  feeds: Record<string, OrtTensor>,
  timer: RunTimer | undefined,
): Promise<Record<string, OrtTensor>> {
  if (!timer) return session.run(feeds);
  const t0 = performance.now();
  const out = await session.run(feeds);
  timer.ortMs += performance.now() - t0;
  timer.runs += 1;
  return out;
}

function floats(out: Record<string, OrtTensor>, name: string): Float32Array {
  const t = out[name];
  if (!t || !(t.data instanceof Float32Array)) throw new ModelError(`graph output "${name}" is missing or not float32; re-export the bundle`);
  return t.data;
}

/** The `<name>_keys` and `<name>_values` feeds of a K/V input. */
function kvFeeds(name: string, kv: KvInput): Record<string, OrtTensor> {
  return { [`${name}_keys`]: floatTensor(kv.keys, kv.dims), [`${name}_values`]: floatTensor(kv.values, kv.dims) };
}

/** vision.onnx: pixels [F, 3, H, W] → image_embeds [F, N, D]. */
export class VisionGraph {
  constructor(
    readonly session: OrtSession,
    readonly width: number,
    readonly height: number,
  ) {}

  /** `frames` frames (default 1) of NCHW floats, one after the other in `pixels`. */
  async run(pixels: Float32Array, timer?: RunTimer, frames = 1): Promise<OrtTensor> {
    const out = await timedRun(this.session, { pixels: floatTensor(pixels, [frames, 3, this.height, this.width]) }, timer);
    const embeds = out.image_embeds;
    if (!embeds) throw new ModelError('vision.onnx returned no image_embeds; re-export the bundle');
    return embeds;
  }
}

/** casa_kv.onnx: image_embeds [F, N, D] → image_keys / image_values [C, F, KVH, N, Dh]. */
export class CasaKvGraph {
  constructor(readonly session: OrtSession) {}

  async run(imageEmbeds: OrtTensor, timer?: RunTimer): Promise<{ keys: OrtTensor; values: OrtTensor }> {
    const out = await timedRun(this.session, { image_embeds: imageEmbeds }, timer);
    const keys = out.image_keys;
    const values = out.image_values;
    if (!keys || !values) throw new ModelError('casa_kv.onnx returned no image_keys / image_values; re-export the bundle');
    return { keys, values };
  }
}

export interface KvInput {
  keys: Float32Array;
  values: Float32Array;
  /** [layers, 1, kvHeads, tokens, headDim] */
  dims: number[];
}

export interface CasaStepInput {
  ids: readonly number[];
  /** Self-attention position of the first id. */
  position: number;
  /** CASA window position of the first id (1 for a window's first text token). */
  windowPosition: number;
  past: KvInput;
  imageKeys: OrtTensor;
  imageValues: OrtTensor;
  window: KvInput;
}

export interface CasaStepOutput {
  /** [T, V] */
  logits: Float32Array;
  /** [L, 1, KVH, T, Dh] */
  newKeys: Float32Array;
  newValues: Float32Array;
  /** [C, 1, KVH, T, Dh] */
  newWindowKeys: Float32Array;
  newWindowValues: Float32Array;
}

/** One stream's CASA step, whichever format version the decoder has. */
export interface CasaStepGraph {
  readonly session: OrtSession;
  step(inp: CasaStepInput, timer?: RunTimer): Promise<CasaStepOutput>;
}

/** decoder.onnx of a version-1 casa bundle: one step over T new text tokens (batch 1). */
export class CasaDecoderGraph implements CasaStepGraph {
  constructor(readonly session: OrtSession) {}

  async step(inp: CasaStepInput, timer?: RunTimer): Promise<CasaStepOutput> {
    const t = inp.ids.length;
    const feeds: Record<string, OrtTensor> = {
      input_ids: idsTensor(inp.ids),
      position_ids: rangeTensor(inp.position, t),
      window_position_ids: rangeTensor(inp.windowPosition, t),
      ...kvFeeds('past', inp.past),
      image_keys: inp.imageKeys,
      image_values: inp.imageValues,
      ...kvFeeds('window', inp.window),
    };
    const out = await timedRun(this.session, feeds, timer);
    return { ...stepOutput(out), newWindowKeys: floats(out, 'new_window_keys'), newWindowValues: floats(out, 'new_window_values') };
  }
}

/** One cache of a batched step: per block, keys and values [B, KVH, size, Dh]; row b holds lengths[b] entries. */
export interface BatchCache {
  keys: readonly Float32Array[];
  values: readonly Float32Array[];
  size: number;
  lengths: BigInt64Array;
}

/**
 * A batched CASA step (format version 2): B rows of T tokens each, every row with its own
 * positions and cache lengths. Row-major int64 arrays: `ids`, `positions`,
 * `windowPositions` [B·T]. Padding beyond a row's length is never read into its result (the
 * graph masks it), but must hold finite values.
 */
export interface CasaBatchInput {
  rows: number;
  tokens: number;
  ids: BigInt64Array;
  positions: BigInt64Array;
  windowPositions: BigInt64Array;
  /** Self-attention cache (L blocks), the frame's image K/V and the window's text K/V (C blocks each). */
  past: BatchCache;
  image: BatchCache;
  window: BatchCache;
}

/** decoder.onnx of a version-2 casa bundle: B ragged rows at once. */
export class CasaBatchDecoderGraph implements CasaStepGraph {
  constructor(
    readonly session: OrtSession,
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly casaLayers: number,
  ) {}

  /** Outputs as CasaStepOutput with a batch axis: logits [B, T, V], new keys [L, B, KVH, T, Dh] … */
  async run(inp: CasaBatchInput, timer?: RunTimer): Promise<CasaStepOutput> {
    const [b, t] = [inp.rows, inp.tokens];
    const feeds: Record<string, OrtTensor> = {
      input_ids: new Tensor('int64', inp.ids, [b, t]),
      position_ids: new Tensor('int64', inp.positions, [b, t]),
      window_position_ids: new Tensor('int64', inp.windowPositions, [b, t]),
    };
    for (const name of ['past', 'image', 'window'] as const) this.cacheFeeds(feeds, name, inp[name], b);
    const out = await timedRun(this.session, feeds, timer);
    return { ...stepOutput(out), newWindowKeys: floats(out, 'new_window_keys'), newWindowValues: floats(out, 'new_window_values') };
  }

  private cacheFeeds(feeds: Record<string, OrtTensor>, name: CacheName, cache: BatchCache, b: number): void {
    const dims = [b, this.kvHeads, cache.size, this.headDim];
    feeds[`${name}_lengths`] = new Tensor('int64', cache.lengths, [b]);
    cache.keys.forEach((k, i) => (feeds[cacheInputName(name, 'keys', i)] = floatTensor(k, dims)));
    cache.values.forEach((v, i) => (feeds[cacheInputName(name, 'values', i)] = floatTensor(v, dims)));
  }

  /** One stream's step as a batch of one row (the unbatched engine over a version-2 bundle). */
  async step(inp: CasaStepInput, timer?: RunTimer): Promise<CasaStepOutput> {
    const t = inp.ids.length;
    const image = inp.imageKeys.dims;
    return this.run(
      {
        rows: 1,
        tokens: t,
        ids: int64(inp.ids),
        positions: int64Range(inp.position, t),
        windowPositions: int64Range(inp.windowPosition, t),
        past: singleRow(inp.past.keys, inp.past.values, inp.past.dims),
        image: singleRow(inp.imageKeys.data as Float32Array, inp.imageValues.data as Float32Array, image),
        window: singleRow(inp.window.keys, inp.window.values, inp.window.dims),
      },
      timer,
    );
  }
}

/**
 * A cache of one stream laid out [blocks, 1, KVH, n, Dh] (as the unbatched engine keeps it)
 * as one row of a batch: block i's [1, KVH, n, Dh] is a contiguous view.
 */
function singleRow(keys: Float32Array, values: Float32Array, dims: readonly number[]): BatchCache {
  const [blocks = 0, , h = 0, n = 0, dh = 0] = dims;
  const size = h * n * dh;
  const views = (a: Float32Array): Float32Array[] => Array.from({ length: blocks }, (_, i) => a.subarray(i * size, (i + 1) * size));
  return { keys: views(keys), values: views(values), size: n, lengths: int64([n]) };
}

function int64(values: readonly number[]): BigInt64Array {
  const a = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) a[i] = BigInt(values[i] as number);
  return a;
}

function int64Range(start: number, count: number): BigInt64Array {
  const a = new BigInt64Array(count);
  for (let i = 0; i < count; i++) a[i] = BigInt(start + i);
  return a;
}

export interface InsertionStepInput {
  ids: readonly number[];
  /** image_embeds [1, N', D] placed before the ids (N' = 0 for text-only steps). */
  imageEmbeds: OrtTensor;
  /** Position of the first entry (image token or id). */
  position: number;
  past: KvInput;
}

export interface InsertionStepOutput {
  /** [N' + T, V] */
  logits: Float32Array;
  /** [L, 1, KVH, N' + T, Dh] */
  newKeys: Float32Array;
  newValues: Float32Array;
}

/** The outputs every decoder step has: logits and the self-attention K/V of the new entries. */
function stepOutput(out: Record<string, OrtTensor>): Pick<CasaStepOutput, 'logits' | 'newKeys' | 'newValues'> {
  return { logits: floats(out, 'logits'), newKeys: floats(out, 'new_keys'), newValues: floats(out, 'new_values') };
}

/** decoder.onnx of an insertion bundle: one step over N' image tokens and T text tokens. */
export class InsertionDecoderGraph {
  constructor(readonly session: OrtSession) {}

  async step(inp: InsertionStepInput, timer?: RunTimer): Promise<InsertionStepOutput> {
    const n = inp.imageEmbeds.dims[1] ?? 0;
    const feeds: Record<string, OrtTensor> = {
      input_ids: idsTensor(inp.ids),
      image_embeds: inp.imageEmbeds,
      position_ids: rangeTensor(inp.position, n + inp.ids.length),
      ...kvFeeds('past', inp.past),
    };
    return stepOutput(await timedRun(this.session, feeds, timer));
  }
}

/** A CASA bundle's graphs: its decoder only ever runs with the casa_kv graph beside it. */
export interface CasaGraphs {
  readonly fusion: 'casa';
  vision: VisionGraph;
  casaKv: CasaKvGraph;
  /** Version 1: CasaDecoderGraph; version 2: CasaBatchDecoderGraph. */
  decoder: CasaStepGraph;
}

/** An insertion bundle's graphs (no casa_kv). */
export interface InsertionGraphs {
  readonly fusion: 'insertion';
  vision: VisionGraph;
  decoder: InsertionDecoderGraph;
}

/** A bundle's graphs, keyed on its fusion: a CASA decoder cannot be wrapped as an insertion one, nor the reverse. */
export type BundleGraphs = CasaGraphs | InsertionGraphs;

/** The onnxruntime sessions behind a bundle's graphs. */
export function graphSessions(g: BundleGraphs): OrtSession[] {
  return g.fusion === 'casa' ? [g.vision.session, g.casaKv.session, g.decoder.session] : [g.vision.session, g.decoder.session];
}

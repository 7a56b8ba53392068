/**
 * Thin typed wrappers over the bundle's onnxruntime sessions (docs/model-format.md).
 * They build the input tensors (zero-copy views where possible), run the graph and hand
 * back the outputs as typed arrays. The time spent inside onnxruntime's `run` is added
 * to an optional RunTimer, so the engine's own overhead can be measured apart.
 */
import { Tensor, type InferenceSession } from 'onnxruntime-node';
import { ModelError } from '../errors.js';
import { pastInputName } from './manifest.js';

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

/**
 * A batched CASA step (format version 2): B rows of T tokens each, every row with its own
 * positions and cache lengths. Row-major int64 arrays: `ids`, `positions`,
 * `windowPositions` [B·T]; lengths [B]. Padding beyond a row's length is never read into
 * its result (the graph masks it), but must hold finite values.
 */
export interface CasaBatchInput {
  rows: number;
  tokens: number;
  ids: BigInt64Array;
  positions: BigInt64Array;
  windowPositions: BigInt64Array;
  /** Per block l: past keys / values [B, KVH, past, Dh]; row b holds pastLengths[b] entries. */
  pastKeys: readonly Float32Array[];
  pastValues: readonly Float32Array[];
  past: number;
  pastLengths: BigInt64Array;
  /** [C, B, KVH, imageTokens, Dh] */
  imageKeys: Float32Array;
  imageValues: Float32Array;
  imageTokens: number;
  imageLengths: BigInt64Array;
  /** [C, B, KVH, window, Dh] */
  windowKeys: Float32Array;
  windowValues: Float32Array;
  window: number;
  windowLengths: BigInt64Array;
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
    const [b, t, h, dh, c] = [inp.rows, inp.tokens, this.kvHeads, this.headDim, this.casaLayers];
    const feeds: Record<string, OrtTensor> = {
      input_ids: new Tensor('int64', inp.ids, [b, t]),
      position_ids: new Tensor('int64', inp.positions, [b, t]),
      window_position_ids: new Tensor('int64', inp.windowPositions, [b, t]),
      past_lengths: new Tensor('int64', inp.pastLengths, [b]),
      image_keys: floatTensor(inp.imageKeys, [c, b, h, inp.imageTokens, dh]),
      image_values: floatTensor(inp.imageValues, [c, b, h, inp.imageTokens, dh]),
      image_lengths: new Tensor('int64', inp.imageLengths, [b]),
      window_keys: floatTensor(inp.windowKeys, [c, b, h, inp.window, dh]),
      window_values: floatTensor(inp.windowValues, [c, b, h, inp.window, dh]),
      window_lengths: new Tensor('int64', inp.windowLengths, [b]),
    };
    for (let l = 0; l < this.layers; l++) {
      feeds[pastInputName('keys', l)] = floatTensor(inp.pastKeys[l] as Float32Array, [b, h, inp.past, dh]);
      feeds[pastInputName('values', l)] = floatTensor(inp.pastValues[l] as Float32Array, [b, h, inp.past, dh]);
    }
    const out = await timedRun(this.session, feeds, timer);
    return { ...stepOutput(out), newWindowKeys: floats(out, 'new_window_keys'), newWindowValues: floats(out, 'new_window_values') };
  }

  /** One stream's step as a batch of one row (the unbatched engine over a version-2 bundle). */
  async step(inp: CasaStepInput, timer?: RunTimer): Promise<CasaStepOutput> {
    const t = inp.ids.length;
    const p = inp.past.dims[3] ?? 0;
    const block = this.kvHeads * p * this.headDim;
    // The past is laid out [L][KVH][P][Dh]: block l's [1, KVH, P, Dh] is a contiguous view.
    const layer = (a: Float32Array, l: number): Float32Array => a.subarray(l * block, (l + 1) * block);
    const ls = Array.from({ length: this.layers }, (_, l) => l);
    const n = inp.imageKeys.dims[3] ?? 0;
    const w = inp.window.dims[3] ?? 0;
    return this.run(
      {
        rows: 1,
        tokens: t,
        ids: int64(inp.ids),
        positions: int64Range(inp.position, t),
        windowPositions: int64Range(inp.windowPosition, t),
        pastKeys: ls.map((l) => layer(inp.past.keys, l)),
        pastValues: ls.map((l) => layer(inp.past.values, l)),
        past: p,
        pastLengths: int64([p]),
        imageKeys: inp.imageKeys.data as Float32Array,
        imageValues: inp.imageValues.data as Float32Array,
        imageTokens: n,
        imageLengths: int64([n]),
        windowKeys: inp.window.keys,
        windowValues: inp.window.values,
        window: w,
        windowLengths: int64([w]),
      },
      timer,
    );
  }
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

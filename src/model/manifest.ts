/**
 * casa.json, the bundle manifest (docs/model-format.md). Parsed with zod; the format
 * and version are checked first so that a bundle from another format version gets
 * that message rather than a list of schema complaints.
 */
import { z } from 'zod';
import { FIT_MODES } from '../ingest/types.js';

/** The newest bundle format version (docs/model-format.md); the exporter writes it. */
export const FORMAT_VERSION = 2;
/** The versions this runtime reads: 1 (batch 1, unbatched engine only) and 2 (batched CASA decoder). */
export const FORMAT_VERSIONS = [1, 2] as const;
export type FormatVersion = (typeof FORMAT_VERSIONS)[number];
export const FORMAT_NAME = 'casa-live-bundle';

const int = z.int();
const posInt = z.int().min(1);
const rgb = z.tuple([z.number(), z.number(), z.number()]);

export const manifestSchema = z.object({
  format: z.literal(FORMAT_NAME),
  formatVersion: z.literal(FORMAT_VERSIONS),
  name: z.string().min(1),
  fusion: z.enum(['casa', 'insertion']),
  description: z.string().optional(),
  image: z.object({
    width: posInt,
    height: posInt,
    fit: z.enum(FIT_MODES),
    mean: rgb,
    std: rgb.refine((s) => s.every((v) => v > 0), 'every std must be > 0'),
    tokensPerFrame: posInt,
  }),
  decoder: z.object({
    layers: posInt,
    hiddenSize: posInt,
    heads: posInt,
    kvHeads: posInt,
    headDim: posInt.refine((d) => d % 2 === 0, 'headDim must be even (rotary pairs)'),
    vocabSize: posInt,
    casaLayers: z.array(int.min(0)),
    ropeTheta: z.number().gt(0),
    ropeStyle: z.literal('rotate_half'),
  }),
  tokens: z.object({
    eos: int.min(0),
    preImage: int.min(0),
    postImage: int.min(0),
    pad: int.min(0),
    penaltyIgnore: z.array(int.min(0)),
  }),
  prompt: z.object({
    text: z.string(),
    frameOpening: z.string(),
    preImage: z.string().min(1),
    postImage: z.string().min(1),
    eos: z.string().min(1),
  }),
  generation: z.object({
    fps: z.number().gt(0),
    maxNewTokensPerFrame: posInt,
    temperature: z.number().min(0),
    topK: int.min(0),
    repetitionPenalty: z.number().gt(0),
    repetitionPenaltyDecay: z.number().min(0).max(1),
    repetitionCountClamp: z.number().min(0),
    eosBias: z.number(),
  }),
  context: z.object({
    maxContextTokens: posInt,
    evictChunk: posInt,
  }),
  files: z.object({
    tokenizer: z.string().min(1),
    vision: z.string().min(1),
    decoder: z.string().min(1),
    casaKv: z.string().min(1).optional(),
  }),
  training: z.record(z.string(), z.unknown()).optional(),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type Fusion = Manifest['fusion'];

/**
 * Validates a parsed casa.json. Returns the manifest, or a list of problems (each
 * "field: what is wrong") for the caller to turn into one error naming the file.
 */
export function parseManifest(raw: unknown): { ok: true; manifest: Manifest } | { ok: false; problems: string[] } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, problems: ['not a JSON object'] };
  }
  const obj = raw as Record<string, unknown>;
  if (obj.format !== FORMAT_NAME) {
    return { ok: false, problems: [`format is ${JSON.stringify(obj.format)}, expected "${FORMAT_NAME}"`] };
  }
  if (!(FORMAT_VERSIONS as readonly unknown[]).includes(obj.formatVersion)) {
    return {
      ok: false,
      problems: [
        `formatVersion ${JSON.stringify(obj.formatVersion)} is not supported; this runtime reads versions ${FORMAT_VERSIONS.join(' and ')}`,
      ],
    };
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      problems: parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`),
    };
  }
  const m = parsed.data;
  const problems: string[] = [];
  const d = m.decoder;
  if (d.heads % d.kvHeads !== 0) problems.push(`decoder.heads (${d.heads}) must be a multiple of decoder.kvHeads (${d.kvHeads})`);
  const sorted = d.casaLayers.every((v, i, a) => i === 0 || v > (a[i - 1] as number));
  if (!sorted) problems.push('decoder.casaLayers must be strictly ascending');
  if (d.casaLayers.some((l) => l >= d.layers)) problems.push(`decoder.casaLayers must be < decoder.layers (${d.layers})`);
  if (m.fusion === 'casa') {
    if (d.casaLayers.length === 0) problems.push('decoder.casaLayers: a casa bundle needs at least one CASA layer');
    if (m.files.casaKv === undefined) problems.push('files.casaKv: required for fusion "casa"');
  } else if (d.casaLayers.length !== 0) {
    problems.push('decoder.casaLayers: must be [] for fusion "insertion"');
  }
  const t = m.tokens;
  for (const [k, v] of Object.entries({ eos: t.eos, preImage: t.preImage, postImage: t.postImage, pad: t.pad })) {
    if (v >= d.vocabSize) problems.push(`tokens.${k} (${v}) is outside the vocabulary (${d.vocabSize})`);
  }
  if (t.penaltyIgnore.some((v) => v >= d.vocabSize)) problems.push('tokens.penaltyIgnore: id outside the vocabulary');
  if (problems.length) return { ok: false, problems };
  return { ok: true, manifest: m };
}

/** A tensor as the format specifies it: null marks a dynamic dimension. */
export interface TensorSpec {
  name: string;
  type: 'float32' | 'int64';
  shape: (number | null)[];
}

export interface GraphSpec {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export type GraphName = 'vision' | 'casaKv' | 'decoder';

/**
 * Whether the bundle's decoder takes a batch of ragged rows (format version 2, fusion
 * "casa"). Version 1 decoders, and every insertion decoder, run one stream per graph run.
 */
export function isBatchable(m: Manifest): boolean {
  return m.fusion === 'casa' && m.formatVersion >= 2;
}

/** The inputs and outputs every graph of a bundle must have (docs/model-format.md). */
export function expectedGraphs(m: Manifest): Partial<Record<GraphName, GraphSpec>> {
  const { width, height, tokensPerFrame: N } = m.image;
  const D = m.decoder.hiddenSize;
  const f = (name: string, shape: (number | null)[]): TensorSpec => ({ name, type: 'float32', shape });
  const _ = null;
  const vision: GraphSpec = {
    inputs: [f('pixels', [_, 3, height, width])],
    outputs: [f('image_embeds', [_, N, D])],
  };
  if (m.fusion === 'insertion') return { vision, decoder: insertionDecoderSpec(m) };
  const { kvHeads: H, headDim: Dh } = m.decoder;
  const C = m.decoder.casaLayers.length;
  return {
    vision,
    casaKv: {
      inputs: [f('image_embeds', [_, N, D])],
      outputs: [f('image_keys', [C, _, H, N, Dh]), f('image_values', [C, _, H, N, Dh])],
    },
    decoder: isBatchable(m) ? casaDecoderSpecV2(m) : casaDecoderSpecV1(m),
  };
}

const f32 = (name: string, shape: (number | null)[]): TensorSpec => ({ name, type: 'float32', shape });
const i64 = (name: string, shape: (number | null)[]): TensorSpec => ({ name, type: 'int64', shape });

/** The CASA decoder's outputs, batch axis `b` (1 in version 1, dynamic in version 2). */
function casaDecoderOutputs(m: Manifest, b: number | null): TensorSpec[] {
  const { layers: L, kvHeads: H, headDim: Dh, vocabSize: V } = m.decoder;
  const C = m.decoder.casaLayers.length;
  return [
    f32('logits', [b, null, V]),
    f32('new_keys', [L, b, H, null, Dh]),
    f32('new_values', [L, b, H, null, Dh]),
    f32('new_window_keys', [C, b, H, null, Dh]),
    f32('new_window_values', [C, b, H, null, Dh]),
  ];
}

/** Version 1: batch 1, the self-attention cache as one [L,1,KVH,P,Dh] tensor. */
function casaDecoderSpecV1(m: Manifest): GraphSpec {
  const { layers: L, kvHeads: H, headDim: Dh } = m.decoder;
  const C = m.decoder.casaLayers.length;
  const _ = null;
  return {
    inputs: [
      i64('input_ids', [1, _]),
      i64('position_ids', [1, _]),
      i64('window_position_ids', [1, _]),
      f32('past_keys', [L, 1, H, _, Dh]),
      f32('past_values', [L, 1, H, _, Dh]),
      f32('image_keys', [C, 1, H, _, Dh]),
      f32('image_values', [C, 1, H, _, Dh]),
      f32('window_keys', [C, 1, H, _, Dh]),
      f32('window_values', [C, 1, H, _, Dh]),
    ],
    outputs: casaDecoderOutputs(m, 1),
  };
}

/** The caches a version-2 CASA decoder takes, one tensor per block each. */
export type CacheName = 'past' | 'image' | 'window';

/** The input name of block `block`'s keys or values of a cache in format version 2 (e.g. past_keys_0). */
export function cacheInputName(cache: CacheName, kind: 'keys' | 'values', block: number): string {
  return `${cache}_${kind}_${block}`;
}

/** Version 2: B ragged rows; per-row cache lengths; one cache tensor per block. */
function casaDecoderSpecV2(m: Manifest): GraphSpec {
  const { layers: L, kvHeads: H, headDim: Dh } = m.decoder;
  const C = m.decoder.casaLayers.length;
  const _ = null;
  const caches: TensorSpec[] = [];
  for (const [cache, blocks] of [['past', L], ['image', C], ['window', C]] as const) {
    for (const kind of ['keys', 'values'] as const) {
      for (let i = 0; i < blocks; i++) caches.push(f32(cacheInputName(cache, kind, i), [_, H, _, Dh]));
    }
  }
  return {
    inputs: [
      i64('input_ids', [_, _]),
      i64('position_ids', [_, _]),
      i64('window_position_ids', [_, _]),
      i64('past_lengths', [_]),
      i64('image_lengths', [_]),
      i64('window_lengths', [_]),
      ...caches,
    ],
    outputs: casaDecoderOutputs(m, null),
  };
}

/** The insertion twin's decoder: the same in versions 1 and 2 (batch 1). */
function insertionDecoderSpec(m: Manifest): GraphSpec {
  const { layers: L, kvHeads: H, headDim: Dh, hiddenSize: D, vocabSize: V } = m.decoder;
  const _ = null;
  return {
    inputs: [
      i64('input_ids', [1, _]),
      f32('image_embeds', [1, _, D]),
      i64('position_ids', [1, _]),
      f32('past_keys', [L, 1, H, _, Dh]),
      f32('past_values', [L, 1, H, _, Dh]),
    ],
    outputs: [f32('logits', [1, _, V]), f32('new_keys', [L, 1, H, _, Dh]), f32('new_values', [L, 1, H, _, Dh])],
  };
}

export function formatShape(shape: readonly (number | string | null)[]): string {
  return `[${shape.map((d) => (typeof d === 'number' ? String(d) : '?')).join(',')}]`;
}

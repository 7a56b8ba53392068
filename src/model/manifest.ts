/**
 * casa.json, the bundle manifest (docs/model-format.md). Parsed with zod; the format
 * and version are checked first so that a bundle from another format version gets
 * that message rather than a list of schema complaints.
 */
import { z } from 'zod';
import { FIT_MODES } from '../ingest/types.js';

/** The bundle format version this runtime implements (docs/model-format.md). */
export const FORMAT_VERSION = 1;
export const FORMAT_NAME = 'casa-live-bundle';

const int = z.int();
const posInt = z.int().min(1);
const rgb = z.tuple([z.number(), z.number(), z.number()]);

export const manifestSchema = z.object({
  format: z.literal(FORMAT_NAME),
  formatVersion: z.literal(FORMAT_VERSION),
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
  if (obj.formatVersion !== FORMAT_VERSION) {
    return {
      ok: false,
      problems: [
        `formatVersion ${JSON.stringify(obj.formatVersion)} is not supported; this runtime reads version ${FORMAT_VERSION}`,
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

/** The inputs and outputs every graph of a bundle must have (docs/model-format.md). */
export function expectedGraphs(m: Manifest): Partial<Record<GraphName, GraphSpec>> {
  const { width, height, tokensPerFrame: N } = m.image;
  const { layers: L, kvHeads: H, headDim: Dh, hiddenSize: D, vocabSize: V } = m.decoder;
  const C = m.decoder.casaLayers.length;
  const f = (name: string, shape: (number | null)[]): TensorSpec => ({ name, type: 'float32', shape });
  const i64 = (name: string, shape: (number | null)[]): TensorSpec => ({ name, type: 'int64', shape });
  const _ = null;
  const vision: GraphSpec = {
    inputs: [f('pixels', [_, 3, height, width])],
    outputs: [f('image_embeds', [_, N, D])],
  };
  if (m.fusion === 'casa') {
    return {
      vision,
      casaKv: {
        inputs: [f('image_embeds', [_, N, D])],
        outputs: [f('image_keys', [C, _, H, N, Dh]), f('image_values', [C, _, H, N, Dh])],
      },
      decoder: {
        inputs: [
          i64('input_ids', [1, _]),
          i64('position_ids', [1, _]),
          i64('window_position_ids', [1, _]),
          f('past_keys', [L, 1, H, _, Dh]),
          f('past_values', [L, 1, H, _, Dh]),
          f('image_keys', [C, 1, H, _, Dh]),
          f('image_values', [C, 1, H, _, Dh]),
          f('window_keys', [C, 1, H, _, Dh]),
          f('window_values', [C, 1, H, _, Dh]),
        ],
        outputs: [
          f('logits', [1, _, V]),
          f('new_keys', [L, 1, H, _, Dh]),
          f('new_values', [L, 1, H, _, Dh]),
          f('new_window_keys', [C, 1, H, _, Dh]),
          f('new_window_values', [C, 1, H, _, Dh]),
        ],
      },
    };
  }
  return {
    vision,
    decoder: {
      inputs: [
        i64('input_ids', [1, _]),
        f('image_embeds', [1, _, D]),
        i64('position_ids', [1, _]),
        f('past_keys', [L, 1, H, _, Dh]),
        f('past_values', [L, 1, H, _, Dh]),
      ],
      outputs: [f('logits', [1, _, V]), f('new_keys', [L, 1, H, _, Dh]), f('new_values', [L, 1, H, _, Dh])],
    },
  };
}

export function formatShape(shape: readonly (number | string | null)[]): string {
  return `[${shape.map((d) => (typeof d === 'number' ? String(d) : '?')).join(',')}]`;
}

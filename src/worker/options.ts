/**
 * Session options of a worker model: the defaults its worker announced (`ready`), resolved
 * and validated by the same rules as the ONNX engine's (resolveSessionOptions), and the
 * map sent in `open` (docs/worker-protocol.md §open).
 */
import type { ResolvedSessionOptions, SessionDefaults, SessionOptions } from '../session/caption-session.js';
import { SAMPLING_FIELDS } from '../session/sampler.js';
import { WorkerProtocolError, type WorkerModelInfo } from './protocol.js';

const NUMERIC_DEFAULTS = ['fps', 'maxNewTokensPerFrame', ...SAMPLING_FIELDS, 'evictChunk'] as const;

function numberAt(d: Record<string, unknown>, key: string): number {
  const v = d[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new WorkerProtocolError(`the model worker's defaults lack a number "${key}"`);
  return v;
}

/** The announced model as resolveSessionOptions sees a manifest. */
export function sessionDefaults(info: WorkerModelInfo): SessionDefaults {
  const d = info.defaults;
  const n = Object.fromEntries(NUMERIC_DEFAULTS.map((k) => [k, numberAt(d, k)])) as Record<(typeof NUMERIC_DEFAULTS)[number], number>;
  const cap = d.maxContextTokens === null ? Infinity : numberAt(d, 'maxContextTokens');
  const ignore = Array.isArray(d.penaltyIgnore) ? (d.penaltyIgnore as unknown[]).filter((x): x is number => typeof x === 'number') : [];
  const eos = info.stopIds[0];
  if (typeof eos !== 'number') throw new WorkerProtocolError('the model worker announced no stop token');
  return {
    name: info.name,
    fusion: info.fusion,
    image: { fit: info.image.fit, tokensPerFrame: info.image.tokensPerFrame },
    tokens: { eos, penaltyIgnore: ignore },
    generation: n,
    context: { maxContextTokens: cap, evictChunk: n.evictChunk },
    stopIds: info.stopIds,
    acceptsPrompt: info.acceptsPrompt,
  };
}

/** The `open` message's options (Infinity is sent as null; sinkTokens null = the prompt's length, counted by the worker). */
export function wireOptions(r: ResolvedSessionOptions, given: SessionOptions): Record<string, unknown> {
  const s = r.sampler;
  return {
    temperature: s.temperature,
    topK: s.topK,
    repetitionPenalty: s.repetitionPenalty,
    repetitionPenaltyDecay: s.repetitionPenaltyDecay,
    repetitionCountClamp: s.repetitionCountClamp,
    penaltyIgnore: [...s.penaltyIgnore],
    eosBias: s.eosBias,
    stopBias: s.stopBias,
    noRepeatNgramSize: s.noRepeatNgramSize,
    noRepeatNgramWindow: s.noRepeatNgramWindow,
    greedyProcessors: s.greedyProcessors ?? false,
    seed: s.seed,
    maxNewTokensPerFrame: r.maxNewTokensPerFrame,
    maxContextTokens: Number.isFinite(r.maxContextTokens) ? r.maxContextTokens : null,
    evictChunk: r.evictChunk,
    sinkTokens: given.sinkTokens ?? null,
    fps: r.fps,
    tokenGranularity: r.tokenGranularity,
    realtimeDeadline: r.realtimeDeadline,
    ...(r.prompt !== undefined ? { prompt: r.prompt } : {}),
  };
}

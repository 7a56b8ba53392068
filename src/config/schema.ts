/**
 * The `casa-live serve` config file schema (YAML). Every field is documented in
 * config/casa-live.example.yaml; the resolved, defaults-applied form is `ServeConfig`.
 */
import { z } from 'zod';
import { validateStreamInput } from './input.js';
import { RESTART_MODES, type RestartMode } from '../ingest/retry-policy.js';
import { HWACCEL_RE, SKIP_FRAME_MODES } from '../ingest/ffmpeg-args.js';
import { LOG_LEVELS } from '../logger.js';
import { STREAM_ID_RE, STREAM_ID_RULE } from '../events.js';

export { STREAM_ID_RE };

/**
 * The longest value each kind of config string may have. A value is quoted in logs, status
 * reasons and API answers, so an unbounded one (a 10 MB input) would flood all of them.
 */
export const STRING_LIMITS = {
  id: 64,
  input: 4096,
  path: 4096,
  modelRef: 4096,
  prompt: 2000,
  token: 512,
  envName: 256,
  host: 255,
  origin: 2048,
  hwaccel: 32,
} as const;

/** A string of at most `max` characters; a longer one is refused with the limit (and nothing else is checked). */
export function boundedString(max: number): z.ZodString {
  return z.string().max(max, { error: (issue) => `is too long (${String((issue.input as string).length)} characters; at most ${max})`, abort: true });
}

export const streamIdSchema = boundedString(STRING_LIMITS.id).regex(STREAM_ID_RE, `must be ${STREAM_ID_RULE}`);

export const streamInputSchema = boundedString(STRING_LIMITS.input).superRefine((input, ctx) => {
  const check = validateStreamInput(input);
  if (!check.ok) ctx.addIssue({ code: 'custom', message: check.problem ?? 'invalid input' });
});

/** Generation fields, named as the engine's SessionOptions names them (DESIGN §3). */
const generationFields = {
  temperature: z.number().min(0).max(10).optional(),
  topK: z.int().min(0).optional(),
  maxNewTokensPerFrame: z.int().min(1).max(4096).optional(),
  maxContextTokens: z.int().min(16).optional(),
  sinkTokens: z.int().min(0).optional(),
  repetitionPenalty: z.number().min(0).optional(),
  repetitionPenaltyDecay: z.number().min(0).max(1).optional(),
  repetitionCountClamp: z.number().min(0).optional(),
  eosBias: z.number().optional(),
  seed: z.int().optional(),
  /** Replaces the model's default user instruction. */
  prompt: boundedString(STRING_LIMITS.prompt).min(1).optional(),
};

/**
 * Generation fields once named differently from the engine: old name → engine name. The old
 * name still works, with a deprecation warning (ServeConfig.warnings); giving both is a problem.
 */
export const RENAMED_GENERATION_FIELDS = {
  repetitionDecay: 'repetitionPenaltyDecay',
  repetitionClamp: 'repetitionCountClamp',
} as const satisfies Record<string, keyof typeof generationFields>;
export type RenamedGenerationField = keyof typeof RENAMED_GENERATION_FIELDS;

/** Generation overrides as resolved: absent fields take the model's defaults. */
export const generationSchema = z.strictObject(generationFields);
export type GenerationOverrides = z.infer<typeof generationSchema>;

/** Generation overrides as written: the engine's names, or (deprecated) the old ones, not both. */
export const rawGenerationSchema = z
  .strictObject({
    ...generationFields,
    repetitionDecay: generationFields.repetitionPenaltyDecay,
    repetitionClamp: generationFields.repetitionCountClamp,
  })
  .superRefine((g, ctx) => {
    for (const [old, name] of Object.entries(RENAMED_GENERATION_FIELDS)) {
      if (g[old as RenamedGenerationField] !== undefined && g[name] !== undefined) {
        ctx.addIssue({ code: 'custom', path: [old], message: `is the old name of ${name}; give only ${name}` });
      }
    }
  });
export type RawGenerationOverrides = z.infer<typeof rawGenerationSchema>;

export const restartSchema = z.strictObject({
  /** always: restart when the input ends or fails; on-failure: only when it fails; never. */
  policy: z.enum(RESTART_MODES).optional(),
  initialDelayMs: z.int().min(0).max(3_600_000).optional(),
  maxDelayMs: z.int().min(0).max(3_600_000).optional(),
  /** Consecutive failed attempts before the stream is put in state `error`; absent = unlimited. */
  maxRetries: z.int().min(0).optional(),
});
/** A stream's one retry policy: its ingest reconnects and its pipeline restarts (src/ingest/retry-policy.ts). */
export interface RestartPolicy {
  policy: RestartMode;
  initialDelayMs: number;
  maxDelayMs: number;
  maxRetries?: number;
}

export const rawStreamSchema = z.strictObject({
  id: streamIdSchema,
  input: streamInputSchema,
  model: boundedString(STRING_LIMITS.modelRef).min(1).optional(),
  fps: z.number().gt(0).max(30).optional(),
  generation: rawGenerationSchema.optional(),
  enabled: z.boolean().optional(),
  restart: restartSchema.optional(),
});
export type RawStreamConfig = z.infer<typeof rawStreamSchema>;

/** A secret given inline, from an environment variable, or from a file (systemd LoadCredential). */
export const secretSchema = z.union([
  boundedString(STRING_LIMITS.token).min(16, 'tokens must be at least 16 characters'),
  z.strictObject({ env: boundedString(STRING_LIMITS.envName).min(1) }),
  z.strictObject({ file: boundedString(STRING_LIMITS.path).min(1) }),
]);
export type RawSecret = z.infer<typeof secretSchema>;

/**
 * How the daemon's models run (src/model/bundle.ts LoadOptions, docs/serve.md §engine).
 * Absent fields take the engine's defaults; changes need a restart.
 */
export const engineSchema = z.strictObject({
  /** The batched engine's settings, or false: one stream per graph run on the main thread. */
  batch: z
    .union([
      z.literal(false),
      z.strictObject({
        /** Most streams in one graph run. */
        maxSize: z.int().min(1).max(1024).optional(),
        /** How long a run waits for the other streams inside a frame (ms). */
        gatherMs: z.number().min(0).max(1000).optional(),
      }),
    ])
    .optional(),
  threads: z
    .strictObject({
      /** Inference worker threads (batched engine). */
      workers: z.int().min(1).max(64).optional(),
      /** onnxruntime threads inside one graph run. */
      intraOp: z.int().min(1).max(256).optional(),
    })
    .optional(),
});
export type EngineConfig = z.infer<typeof engineSchema>;

/** How every stream's ffmpeg decodes (src/ingest/ffmpeg-args.ts DecodeOptions, docs/serve.md, "Ingest: decoding"). */
export const ingestSchema = z.strictObject({
  decode: z
    .strictObject({
      /** Decoding threads per ffmpeg child (0: ffmpeg's choice, one per core). */
      threads: z.int().min(0).max(64).optional(),
      /** Frames the decoder may skip (ffmpeg -skip_frame): default (none), noref, bidir, nokey. */
      skipFrame: z.enum(SKIP_FRAME_MODES).optional(),
      /** A hardware decoder (ffmpeg -hwaccel), e.g. vaapi, cuda, auto. */
      hwaccel: boundedString(STRING_LIMITS.hwaccel).regex(HWACCEL_RE, 'must be an ffmpeg hwaccel name (lower-case letters, digits, _)').optional(),
    })
    .optional(),
});
export type IngestConfig = z.infer<typeof ingestSchema>;

export const rawConfigSchema = z.strictObject({
  listen: z
    .strictObject({
      host: boundedString(STRING_LIMITS.host).min(1).optional(),
      port: z.int().min(0).max(65535).optional(),
    })
    .optional(),
  auth: z
    .strictObject({
      /** false: anyone who can reach the port may subscribe and manage streams. */
      required: z.boolean().optional(),
      /** Tokens that may subscribe to feeds and read the stream list. */
      tokens: z.array(secretSchema).optional(),
      /** Tokens that may also add, change and remove streams. */
      adminTokens: z.array(secretSchema).optional(),
      /** Browser origins allowed to open the WebSocket; empty = any. */
      allowedOrigins: z.array(boundedString(STRING_LIMITS.origin).regex(/^https?:\/\/[^/]+$/, 'must be an origin like https://example.com')).optional(),
      /** Require a token for /metrics too. */
      protectMetrics: z.boolean().optional(),
    })
    .optional(),
  model: boundedString(STRING_LIMITS.modelRef).min(1).optional(),
  engine: engineSchema.optional(),
  ingest: ingestSchema.optional(),
  defaults: z
    .strictObject({
      fps: z.number().gt(0).max(30).optional(),
      generation: rawGenerationSchema.optional(),
      restart: restartSchema.optional(),
    })
    .optional(),
  streams: z.array(rawStreamSchema).optional(),
  limits: z
    .strictObject({
      maxClients: z.int().min(1).max(100_000).optional(),
      maxStreams: z.int().min(1).max(1000).optional(),
      clientBufferBytes: z.int().min(4096).optional(),
      clientSoftBufferBytes: z.int().min(1024).optional(),
      resumeWindow: z.int().min(0).max(1_000_000).optional(),
      maxPayloadBytes: z.int().min(256).max(1_048_576).optional(),
      pingIntervalMs: z.int().min(100).max(600_000).optional(),
    })
    .optional(),
  dataDir: boundedString(STRING_LIMITS.path).min(1).optional(),
  captionLog: z
    .strictObject({
      retentionDays: z.number().gt(0).optional(),
      fsync: z.boolean().optional(),
    })
    .optional(),
  log: z
    .strictObject({
      level: z.enum(LOG_LEVELS).optional(),
    })
    .optional(),
});
export type RawConfig = z.infer<typeof rawConfigSchema>;

/** One stream, defaults applied: what a PipelineFactory receives. */
export interface StreamConfig {
  id: string;
  /** As validated; relative file paths are resolved against the config file's directory. */
  input: string;
  /** Model bundle name or path (the stream's own, else the config's `model`). */
  model: string;
  fps: number;
  /** `defaults.generation` overlaid with the stream's own overrides. */
  generation: GenerationOverrides;
  enabled: boolean;
  restart: RestartPolicy;
}

export interface ServeLimits {
  maxClients: number;
  maxStreams: number;
  /** Hard per-client buffer: past it the client is closed with 4008 (resume). */
  clientBufferBytes: number;
  /** Past this much unsent data a client's token events are coalesced. */
  clientSoftBufferBytes: number;
  /** Committed events (captions, status) per stream that can be replayed on resume. */
  resumeWindow: number;
  maxPayloadBytes: number;
  pingIntervalMs: number;
}

/** A problem (or warning) in a config, at a field. */
export interface ConfigProblem {
  /** Field path, e.g. `streams[2].input`; empty for the document itself. */
  path: string;
  message: string;
  /** 1-based line in the YAML file, when known. */
  line?: number;
}

export interface ServeConfig {
  /** Absolute path of the file this was loaded from (undefined when parsed from text). */
  configPath?: string;
  listen: { host: string; port: number };
  auth: {
    required: boolean;
    tokens: string[];
    adminTokens: string[];
    allowedOrigins: string[];
    protectMetrics: boolean;
  };
  model: string;
  /** How models run; {} = the engine's defaults. */
  engine: EngineConfig;
  /** How ffmpeg decodes; {} = ffmpeg's defaults. */
  ingest: IngestConfig;
  defaults: { fps: number; generation: GenerationOverrides; restart: RestartPolicy };
  streams: StreamConfig[];
  limits: ServeLimits;
  dataDir: string;
  captionLog: { retentionDays: number; fsync: boolean };
  log: { level: (typeof LOG_LEVELS)[number] };
  /** What is valid but should change (deprecated field names): `config check` prints them, `serve` logs them. */
  warnings: ConfigProblem[];
}

export const DEFAULTS = {
  host: '127.0.0.1',
  port: 8787,
  model: 'casa-tiny',
  fps: 2,
  restart: { policy: 'always', initialDelayMs: 1000, maxDelayMs: 30_000 } satisfies RestartPolicy,
  limits: {
    maxClients: 1000,
    maxStreams: 64,
    clientBufferBytes: 1024 * 1024,
    clientSoftBufferBytes: 64 * 1024,
    resumeWindow: 2000,
    maxPayloadBytes: 4096,
    pingIntervalMs: 30_000,
  } satisfies ServeLimits,
  retentionDays: 7,
  fsync: true,
  logLevel: 'info',
} as const;

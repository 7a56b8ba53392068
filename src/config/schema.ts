/**
 * The `casa-live serve` config file schema (YAML). Every field is documented in
 * config/casa-live.example.yaml; the resolved, defaults-applied form is `ServeConfig`.
 */
import { z } from 'zod';
import { validateStreamInput } from './input.js';
import { RESTART_MODES, type RestartMode } from '../ingest/retry-policy.js';
import { HWACCEL_RE, NICE_RANGE, SKIP_FRAME_MODES } from '../ingest/ffmpeg-args.js';
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
  /** Outputs (src/sinks) and cluster.redis: a broker or Redis URL, a secret of any kind (a password, a URL with a key in it). */
  url: 2048,
  secret: 2048,
  username: 256,
  clientId: 128,
  topic: 256,
  region: 64,
  keyPrefix: 100,
  hwaccel: 32,
} as const;

/** What a value over its limit is told (the value itself is not quoted). */
export function tooLongMessage(length: number, max: number): string {
  return `is too long (${String(length)} characters; at most ${max})`;
}

/** A string of at most `max` characters; a longer one is refused with the limit (and nothing else is checked). */
export function boundedString(max: number): z.ZodString {
  return z.string().max(max, { error: (issue) => tooLongMessage((issue.input as string).length, max), abort: true });
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
  /** Multiplicative stop-token bias (Kyutai's eos_bias, 0.95 for the released models; 1 = none). */
  stopBias: z.number().gt(0).optional(),
  /** Windowed no-repeat n-gram across frames: n (0 = off) and the window of recent tokens. */
  noRepeatNgramSize: z.int().min(0).max(32).optional(),
  noRepeatNgramWindow: z.int().min(1).max(4096).optional(),
  /** End a frame's text once its 1/fps budget is spent, so captions keep pace with a live stream. */
  realtimeDeadline: z.boolean().optional(),
  seed: z.int().optional(),
  /** Replaces the model's default user instruction (models that take one: hf:…, Hugging Face directories). */
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

/** How subtitle cues are cut: readable blocks, or two rolling lines (src/sinks/rolling.ts). */
export const SUBTITLE_STYLES = ['block', 'rolling'] as const;
export type SubtitleStyle = (typeof SUBTITLE_STYLES)[number];
export const X264_PRESETS = ['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium'] as const;

/** The stream's low-latency HLS (video + WebVTT captions) for the watch page and HLS players. */
export const hlsSchema = z.strictObject({
  enabled: z.boolean().optional(),
  /** Target segment length, seconds. */
  segmentSeconds: z.number().min(0.5).max(10).optional(),
  /** Segments listed in the live playlists. */
  listSize: z.int().min(3).max(60).optional(),
  /** Height of the encoded video (0: the source's). */
  height: z.int().min(0).max(4320).optional(),
  /** x264 preset: faster presets cost less CPU for more bits. */
  preset: z.enum(X264_PRESETS).optional(),
  /** Cue style of the WebVTT rendition. */
  subtitleStyle: z.enum(SUBTITLE_STYLES).optional(),
  lineLength: z.int().min(8).max(200).optional(),
});
export interface HlsConfig {
  enabled: boolean;
  segmentSeconds: number;
  listSize: number;
  height: number;
  preset: (typeof X264_PRESETS)[number];
  subtitleStyle: SubtitleStyle;
  lineLength: number;
}
/** Where a stream's HLS files are: ffmpeg writes the video there, the daemon the subtitles and serves them. */
export function hlsDir(dataDir: string, stream: string): string {
  return `${dataDir.replace(/\/+$/, '')}/hls/${stream}`;
}

export const HLS_DEFAULTS: HlsConfig = { enabled: false, segmentSeconds: 1, listSize: 6, height: 480, preset: 'veryfast', subtitleStyle: 'block', lineLength: 42 };

export const rawStreamSchema = z.strictObject({
  id: streamIdSchema,
  input: streamInputSchema,
  model: boundedString(STRING_LIMITS.modelRef).min(1).optional(),
  fps: z.number().gt(0).max(30).optional(),
  generation: rawGenerationSchema.optional(),
  enabled: z.boolean().optional(),
  restart: restartSchema.optional(),
  hls: hlsSchema.optional(),
});
export type RawStreamConfig = z.infer<typeof rawStreamSchema>;

/** A secret given inline, from an environment variable, or from a file (systemd LoadCredential). */
export const secretSchema = z.union([
  boundedString(STRING_LIMITS.token).min(16, 'tokens must be at least 16 characters'),
  z.strictObject({ env: boundedString(STRING_LIMITS.envName).min(1) }),
  z.strictObject({ file: boundedString(STRING_LIMITS.path).min(1) }),
], { error: 'must be a token string (at least 16 characters), {env: NAME} or {file: PATH}' });
export type RawSecret = z.infer<typeof secretSchema>;

/** A secret of any length (a password, a URL with a key in it): inline, {env}, or {file}. */
export const anySecretSchema = z.union([
  boundedString(STRING_LIMITS.secret).min(1),
  z.strictObject({ env: boundedString(STRING_LIMITS.envName).min(1) }),
  z.strictObject({ file: boundedString(STRING_LIMITS.path).min(1) }),
], { error: 'must be a secret string, {env: NAME} or {file: PATH}' });

/** The broker URLs the MQTT output takes, and the caption ingestion URLs of YouTube. */
export const MQTT_URL_RE = /^(mqtts?|wss?):\/\/[^/\s]+/;
export const MQTT_URL_RULE = 'a broker URL: mqtt://host[:port], mqtts://, ws:// or wss://';
export const HTTP_URL_RE = /^https?:\/\/[^/\s]+/i;
export const MQTT_DEFAULTS = { topicPrefix: 'casa-live', qos: 1 } as const;

/** MQTT output (src/sinks/mqtt.ts): one broker, every stream. */
export const mqttOutputSchema = z.strictObject({
  url: boundedString(STRING_LIMITS.url).regex(MQTT_URL_RE, `must be ${MQTT_URL_RULE}`),
  username: boundedString(STRING_LIMITS.username).min(1).optional(),
  password: anySecretSchema.optional(),
  clientId: boundedString(STRING_LIMITS.clientId).min(1).optional(),
  /** Topics are <topicPrefix>/available and <topicPrefix>/<stream>/{caption,status,token}. */
  topicPrefix: boundedString(STRING_LIMITS.topic).regex(/^[^#+/\s][^#+\s]*$/, 'must be a topic without wildcards (+, #), spaces or a leading /').optional(),
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).optional(),
  /** Also publish token events (not retained). */
  tokens: z.boolean().optional(),
  /** PEM files (relative paths: from the config file's directory). */
  tls: z
    .strictObject({
      ca: boundedString(STRING_LIMITS.path).min(1).optional(),
      cert: boundedString(STRING_LIMITS.path).min(1).optional(),
      key: boundedString(STRING_LIMITS.path).min(1).optional(),
      rejectUnauthorized: z.boolean().optional(),
    })
    .optional(),
});

/** YouTube Live captions of one stream (src/sinks/youtube.ts). */
export const youtubeOutputSchema = z.strictObject({
  stream: streamIdSchema,
  /** The broadcast's closed-caption ingestion URL (it authorises the posts: a secret). */
  url: anySecretSchema,
  clockOffsetMs: z.int().min(-600_000).max(600_000).optional(),
  region: boundedString(STRING_LIMITS.region).regex(/^[A-Za-z0-9_-]+(#[A-Za-z0-9_-]+)?$/, 'must look like reg1#cue1').optional(),
  minIntervalMs: z.int().min(0).max(60_000).optional(),
});

export const outputsSchema = z.strictObject({
  mqtt: mqttOutputSchema.optional(),
  youtube: z.array(youtubeOutputSchema).optional(),
});

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
        /** How long a frame's first step waits for other streams' frames (ms). */
        frameGatherMs: z.number().min(0).max(1000).optional(),
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

/** A Redis URL as cluster.redis takes it (it may hold a password: given inline, {env} or {file} as a secret). */
export const REDIS_URL_RE = /^rediss?:\/\/\S+$/;
export const REDIS_URL_RULE = 'must be a redis:// or rediss:// URL';

/**
 * Cluster mode (docs/cluster.md): several nodes share the streams through Redis. Absent: the
 * daemon runs alone. `maxStreams` is reloadable; the other fields need a restart.
 */
export const clusterSchema = z.strictObject({
  /** Redis URL (redis://[user:password@]host:port/db, rediss:// for TLS), or {env} / {file} holding it. */
  redis: z.union([
    boundedString(STRING_LIMITS.url).regex(REDIS_URL_RE, REDIS_URL_RULE),
    z.strictObject({ env: boundedString(STRING_LIMITS.envName).min(1) }),
    z.strictObject({ file: boundedString(STRING_LIMITS.path).min(1) }),
  ], { error: `${REDIS_URL_RULE}, {env: NAME} or {file: PATH}` }),
  /** This node's name in Redis, unique in the cluster (default: the host name). */
  nodeId: streamIdSchema.optional(),
  /** Most streams this node captions (0: it only serves viewers); default limits.maxStreams. */
  maxStreams: z.int().min(0).max(1000).optional(),
  /** How long a stream's lease lasts without renewal: a dead node's streams move after this. */
  leaseMs: z.int().min(300).max(600_000).optional(),
  /** How often leases are renewed and unowned streams looked for (default leaseMs / 3). */
  renewEveryMs: z.int().min(50).max(300_000).optional(),
  /** Prefix of every Redis key of this cluster (several clusters can share one Redis). */
  keyPrefix: boundedString(STRING_LIMITS.keyPrefix).regex(/^[A-Za-z0-9_.:-]+$/, 'must be letters, digits and _ . : -').optional(),
  /** Trimming of each stream's event log in Redis (Redis Streams): by entries and/or by age. */
  captionStream: z
    .strictObject({
      maxLen: z.int().min(100).max(100_000_000).optional(),
      maxAgeSeconds: z.int().min(60).max(31_536_000).optional(),
    })
    .optional(),
  /** Events held in memory per node while Redis is unreachable; past it the oldest tokens go first. */
  bufferLimit: z.int().min(100).max(10_000_000).optional(),
  /** Also append each owned stream's captions and statuses to the local JSONL caption log. */
  archive: z.boolean().optional(),
});
export type RawClusterConfig = z.infer<typeof clusterSchema>;

/** How every stream's ffmpeg decodes (src/ingest/ffmpeg-args.ts DecodeOptions, docs/serve.md, "Ingest: decoding"). */
export const ingestSchema = z.strictObject({
  decode: z
    .strictObject({
      /** Decoding threads per ffmpeg child (0: ffmpeg's choice, one per core). */
      threads: z.int().min(0).max(64).optional(),
      /** Frames the decoder may skip (ffmpeg -skip_frame): default (none), noref, bidir, nokey. */
      skipFrame: z.enum(SKIP_FRAME_MODES).optional(),
      /** Skip the decoder's deblocking filter (ffmpeg -skip_loop_filter all): the same frames, less CPU. */
      skipLoopFilter: z.boolean().optional(),
      /** A hardware decoder (ffmpeg -hwaccel), e.g. vaapi, cuda, auto. */
      hwaccel: boundedString(STRING_LIMITS.hwaccel).regex(HWACCEL_RE, 'must be an ffmpeg hwaccel name (lower-case letters, digits, _)').optional(),
      /** Added to the daemon's niceness for its ffmpeg children (0–19): above 0 they yield the cores to the model's runs. */
      nice: z.int().min(NICE_RANGE.min).max(NICE_RANGE.max).optional(),
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
  /** The Python model worker (models torch:…, hf:…, Hugging Face directories; docs/worker-protocol.md). */
  worker: z
    .strictObject({
      /** Python interpreter (default: CASA_LIVE_PYTHON, else /usr/bin/python3, else python3 on PATH). */
      python: boundedString(STRING_LIMITS.path).min(1).optional(),
      device: z.enum(['auto', 'cpu', 'cuda']).optional(),
      /** A frame must be captioned within this, else the worker is considered hung and restarted. */
      frameTimeoutMs: z.int().min(1000).max(3_600_000).optional(),
      /** Loading the model (a first download included) must finish within this. */
      loadTimeoutMs: z.int().min(1000).max(24 * 3_600_000).optional(),
    })
    .optional(),
  ingest: ingestSchema.optional(),
  defaults: z
    .strictObject({
      fps: z.number().gt(0).max(30).optional(),
      generation: rawGenerationSchema.optional(),
      restart: restartSchema.optional(),
    })
    .optional(),
  streams: z.array(rawStreamSchema).optional(),
  outputs: outputsSchema.optional(),
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
  cluster: clusterSchema.optional(),
});
export type RawConfig = z.infer<typeof rawConfigSchema>;
export type WorkerConfig = NonNullable<RawConfig['worker']>;

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
  /** Present when the stream's config has `hls` (defaults applied). */
  hls?: HlsConfig;
}

export interface MqttOutputConfig {
  url: string;
  username?: string;
  password?: string;
  clientId?: string;
  topicPrefix: string;
  qos: 0 | 1 | 2;
  tokens: boolean;
  /** Absolute paths. */
  tls?: { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
}

export interface YouTubeOutputConfig {
  stream: string;
  url: string;
  clockOffsetMs: number;
  region?: string;
  minIntervalMs: number;
}

export interface OutputsConfig {
  mqtt?: MqttOutputConfig;
  youtube: YouTubeOutputConfig[];
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
  /** Settings of the Python model worker (absent: its defaults). */
  worker?: WorkerConfig;
  /** How ffmpeg decodes; {} = ffmpeg's defaults. */
  ingest: IngestConfig;
  defaults: { fps: number; generation: GenerationOverrides; restart: RestartPolicy };
  streams: StreamConfig[];
  /** MQTT and YouTube outputs, secrets resolved. */
  outputs: OutputsConfig;
  limits: ServeLimits;
  dataDir: string;
  captionLog: { retentionDays: number; fsync: boolean };
  log: { level: (typeof LOG_LEVELS)[number] };
  /** Cluster mode (docs/cluster.md); absent: the daemon runs alone. */
  cluster?: ClusterConfig;
  /** What is valid but should change (deprecated field names): `config check` prints them, `serve` logs them. */
  warnings: ConfigProblem[];
}

/** The cluster section resolved: the secret read, defaults applied. */
export interface ClusterConfig {
  redisUrl: string;
  nodeId: string;
  maxStreams: number;
  leaseMs: number;
  renewEveryMs: number;
  keyPrefix: string;
  captionStream: { maxLen: number; maxAgeSeconds?: number };
  bufferLimit: number;
  archive: boolean;
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
  cluster: { leaseMs: 5000, keyPrefix: 'casa-live', maxLen: 100_000, bufferLimit: 100_000 },
} as const;

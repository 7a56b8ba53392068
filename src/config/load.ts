/**
 * Loading and validating the serve config. Every problem is reported with the field's
 * path (`streams[2].input`) and, for YAML files, its line: `streams[2].input: unsupported
 * scheme "rtps" (line 14)`. All problems are collected, not just the first.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { formatPath } from '../zod-path.js';

export { formatPath };
import {
  DEFAULTS,
  HLS_DEFAULTS,
  HTTP_URL_RE,
  MQTT_DEFAULTS,
  REDIS_URL_RE,
  REDIS_URL_RULE,
  RENAMED_GENERATION_FIELDS,
  STRING_LIMITS,
  tooLongMessage,
  rawConfigSchema,
  rawStreamSchema,
  type ConfigProblem,
  type GenerationOverrides,
  type OutputsConfig,
  type RawConfig,
  type RawGenerationOverrides,
  type RawSecret,
  type RawStreamConfig,
  type RenamedGenerationField,
  type RestartPolicy,
  type ClusterConfig,
  type ServeConfig,
  type StreamConfig,
} from './schema.js';
import { validateStreamInput } from './input.js';
import { refTakesPrompt } from '../model-ref.js';

export type { ConfigProblem };

/** Where a field is in the YAML file (its 1-based line), by field path. */
type LineOf = (parts: ReadonlyArray<PropertyKey>) => number | undefined;

export function formatProblem(p: ConfigProblem): string {
  const where = p.path === '' ? '(config)' : p.path;
  return `${where}: ${p.message}${p.line !== undefined ? ` (line ${p.line})` : ''}`;
}

/** A config that failed validation; `problems` lists every field that is wrong. */
export class ConfigInvalidError extends ConfigError {
  readonly problems: ConfigProblem[];
  constructor(source: string, problems: ConfigProblem[]) {
    const first = problems[0] ? formatProblem(problems[0]) : 'invalid';
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
    super(`${source}: ${first}${more}`, { details: problems.map(formatProblem) });
    this.problems = problems;
  }
}


export interface ParseOptions {
  /** Used in messages and to resolve relative paths; absent for text not from a file. */
  configPath?: string;
  /** Environment for `{env: NAME}` secrets and $STATE_DIRECTORY; process.env by default. */
  env?: NodeJS.ProcessEnv;
}

export async function loadConfig(configPath: string, options: Omit<ParseOptions, 'configPath'> = {}): Promise<ServeConfig> {
  const abs = path.resolve(configPath);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'ENOENT' ? `config file ${abs} does not exist` : `cannot read config file ${abs}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return parseConfig(text, { ...options, configPath: abs });
}

export function parseConfig(text: string, options: ParseOptions = {}): ServeConfig {
  const source = options.configPath ?? 'config';
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigInvalidError(
      source,
      doc.errors.map((e) => ({
        path: '',
        message: `YAML syntax error: ${e.message.split('\n')[0]}`,
        line: lineCounter.linePos(e.pos[0]).line,
      })),
    );
  }
  const data: unknown = doc.toJS() ?? {};
  const lineOf: LineOf = (parts) => lineOfPath(doc, lineCounter, parts);

  const parsed = rawConfigSchema.safeParse(data);
  if (!parsed.success) {
    // Also report the cross-stream problems (duplicate ids...) so one run shows them all.
    const problems = [...zodProblems(parsed.error, lineOf), ...crossStreamProblems(data, lineOf)];
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    throw new ConfigInvalidError(source, problems);
  }

  const problems: ConfigProblem[] = [];
  const config = resolveConfig(parsed.data, options, problems, lineOf);
  if (problems.length > 0) throw new ConfigInvalidError(source, problems);
  return config;
}

function zodProblems(error: z.ZodError, lineOf: LineOf): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const parts = [...issue.path, key];
        problems.push({ path: formatPath(parts), message: 'unknown field', line: lineOf(parts) });
      }
      continue;
    }
    let message = issue.message;
    if (issue.code === 'invalid_type' && /received undefined/.test(message)) {
      message = `is required (${issue.expected})`;
    } else if (issue.code === 'invalid_union') {
      // A value too long for its branch says so with the limit; anything else names the forms.
      const tooLong = issue.errors.flat().find((e) => e.code === 'too_big' && e.origin === 'string');
      message = tooLong?.message ?? issue.message;
    }
    problems.push({ path: formatPath(issue.path), message, line: lineOf(issue.path) });
  }
  return problems;
}

/** Checks across streams that need no valid schema: duplicate ids, more than one stdin reader. */
function crossStreamProblems(data: unknown, lineOf: LineOf): ConfigProblem[] {
  const streams = (data as { streams?: unknown } | null)?.streams;
  if (!Array.isArray(streams)) return [];
  const problems: ConfigProblem[] = [];
  const seen = new Map<string, number>();
  let stdinAt: number | undefined;
  streams.forEach((s: unknown, i) => {
    const { id, input } = (s ?? {}) as { id?: unknown; input?: unknown };
    if (typeof id === 'string') {
      const prev = seen.get(id);
      if (prev !== undefined) {
        problems.push({ path: `streams[${i}].id`, message: `duplicate stream id "${id}" (also streams[${prev}])`, line: lineOf(['streams', i, 'id']) });
      } else seen.set(id, i);
    }
    if (input === '-') {
      if (stdinAt !== undefined) {
        problems.push({ path: `streams[${i}].input`, message: `only one stream can read stdin (streams[${stdinAt}] already does)`, line: lineOf(['streams', i, 'input']) });
      } else stdinAt = i;
    }
  });
  return problems;
}

function lineOfPath(doc: Document, lc: LineCounter, parts: ReadonlyArray<PropertyKey>): number | undefined {
  // Walk as deep as the document goes; report the deepest node found (the key for maps).
  let node: unknown = doc.contents;
  let best: number | undefined;
  const offsetLine = (n: unknown): number | undefined => {
    const range = (n as { range?: [number, number, number] } | null)?.range;
    return range ? lc.linePos(range[0]).line : undefined;
  };
  best = offsetLine(node);
  for (const part of parts) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === part);
      if (!pair) break;
      best = offsetLine(pair.key) ?? best;
      node = pair.value;
      if (node && parts.indexOf(part) === parts.length - 1) best = offsetLine(node) ?? best;
    } else if (isSeq(node) && typeof part === 'number') {
      node = node.items[part];
      if (!node) break;
      best = offsetLine(node) ?? best;
    } else break;
  }
  return best;
}

/** Where secrets are read from, and where their problems go. */
interface SecretContext {
  configDir: string;
  env: NodeJS.ProcessEnv;
  problems: ConfigProblem[];
  lineOf: LineOf;
}

/** What a secret must be once read: at least `min` characters (`message` otherwise), at most `max` when given. */
interface SecretRule {
  min: number;
  message: string;
  max?: number;
}
const TOKEN_RULE: SecretRule = { min: 16, message: 'tokens must be at least 16 characters' };
/** An output's secret (or the Redis URL) read from {env} or {file} is held to the limit an inline one has. */
const ANY_SECRET: SecretRule = { min: 1, message: 'must not be empty', max: STRING_LIMITS.secret };

/** A secret's value: inline, from an environment variable or from a file; undefined (and a problem) when unreadable. */
function readSecret(secret: RawSecret, at: string, ctx: SecretContext, parts: PropertyKey[]): string | undefined {
  const { configDir, env, problems, lineOf } = ctx;
  if (typeof secret === 'string') return secret;
  if ('env' in secret) {
    const value = env[secret.env]?.trim();
    if (!value) problems.push({ path: `${at}.env`, message: `environment variable ${secret.env} is not set or empty`, line: lineOf([...parts, 'env']) });
    return value || undefined;
  }
  // $CREDENTIALS_DIRECTORY (systemd LoadCredential=) for relative names, else the config dir.
  const base = env.CREDENTIALS_DIRECTORY && !path.isAbsolute(secret.file) ? env.CREDENTIALS_DIRECTORY : configDir;
  const file = path.resolve(base, secret.file);
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    problems.push({ path: `${at}.file`, message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, line: lineOf([...parts, 'file']) });
    return undefined;
  }
}

/** A secret read and held to its rule (a token by default); undefined (and a problem) otherwise. */
function resolveSecret(secret: RawSecret, at: string, ctx: SecretContext, parts: PropertyKey[], rule: SecretRule = TOKEN_RULE): string | undefined {
  const value = readSecret(secret, at, ctx, parts);
  if (value === undefined) return undefined;
  if (value.length < rule.min) {
    ctx.problems.push({ path: at, message: rule.message, line: ctx.lineOf(parts) });
    return undefined;
  }
  if (rule.max !== undefined && value.length > rule.max) {
    ctx.problems.push({ path: at, message: tooLongMessage(value.length, rule.max), line: ctx.lineOf(parts) });
    return undefined;
  }
  return value;
}

function mergeRestart(base: RestartPolicy, over: Partial<RestartPolicy> | undefined): RestartPolicy {
  const merged: RestartPolicy = { ...base };
  if (over) {
    for (const [k, v] of Object.entries(over)) if (v !== undefined) (merged as unknown as Record<string, unknown>)[k] = v;
  }
  return merged;
}

/**
 * The rule on a restart policy: backoff starts at initialDelayMs and grows to maxDelayMs, so
 * the first must not exceed the second. `at` is the policy's path (`defaults.restart`,
 * `streams[2].restart`); `maxName` how the message names its maxDelayMs.
 */
function restartProblems(restart: RestartPolicy, at: string, maxName: string, line?: number): ConfigProblem[] {
  if (restart.initialDelayMs <= restart.maxDelayMs) return [];
  return [{ path: `${at}.initialDelayMs`, message: `must not exceed ${maxName}`, ...(line !== undefined ? { line } : {}) }];
}

/** Generation overrides under the engine's names (a deprecated old name becomes its new one). */
function engineGeneration(raw: RawGenerationOverrides | undefined): GenerationOverrides {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw ?? {})) {
    if (value !== undefined) out[RENAMED_GENERATION_FIELDS[key as RenamedGenerationField] ?? key] = value;
  }
  return out as GenerationOverrides;
}

/** A deprecation warning for every old generation field name in the file. */
function renamedFieldWarnings(raw: RawConfig, lineOf: LineOf): ConfigProblem[] {
  const places: Array<[PropertyKey[], RawGenerationOverrides | undefined]> = [
    [['defaults', 'generation'], raw.defaults?.generation],
    ...(raw.streams ?? []).map((s, i): [PropertyKey[], RawGenerationOverrides | undefined] => [['streams', i, 'generation'], s.generation]),
  ];
  const warnings: ConfigProblem[] = [];
  for (const [parts, generation] of places) {
    for (const [old, name] of Object.entries(RENAMED_GENERATION_FIELDS)) {
      if (generation?.[old as RenamedGenerationField] === undefined) continue;
      const at = [...parts, old];
      warnings.push({ path: formatPath(at), message: `is deprecated: rename it to ${name}`, line: lineOf(at) });
    }
  }
  return warnings;
}

/** Resolves a raw (schema-valid) stream against defaults; used by the config loader and the HTTP API. */
export function resolveStream(
  raw: RawStreamConfig,
  defaults: ServeConfig['defaults'],
  model: string,
  configDir: string,
): StreamConfig {
  const kind = validateStreamInput(raw.input).kind;
  let input = raw.input;
  if (kind === 'file' && !/^file:\/\//i.test(input)) input = path.resolve(configDir, input);
  return {
    id: raw.id,
    input,
    model: raw.model ?? model,
    fps: raw.fps ?? defaults.fps,
    generation: { ...defaults.generation, ...engineGeneration(raw.generation) },
    enabled: raw.enabled ?? true,
    restart: mergeRestart(defaults.restart, raw.restart),
    ...(raw.hls !== undefined ? { hls: { ...HLS_DEFAULTS, ...definedFields(raw.hls) } } : {}),
  };
}

function definedFields<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Validates one stream object (HTTP API), returning problems with paths relative to `prefix`. */
export function parseStream(
  data: unknown,
  config: ServeConfig,
  prefix = '',
): { stream?: StreamConfig; problems: ConfigProblem[] } {
  const parsed = rawStreamSchema.safeParse(data);
  if (!parsed.success) {
    const problems = zodProblems(parsed.error, () => undefined).map((p) => ({
      ...p,
      path: prefix + (p.path.startsWith('[') || prefix === '' ? p.path : `.${p.path}`),
    }));
    return { problems };
  }
  const configDir = config.configPath ? path.dirname(config.configPath) : process.cwd();
  const stream = resolveStream(parsed.data, config.defaults, config.model, configDir);
  const problems = restartProblems(stream.restart, `${prefix ? `${prefix}.` : ''}restart`, 'restart.maxDelayMs');
  const prompt = promptProblem(parsed.data, config.defaults, config.model, configDir, prefix);
  if (prompt) problems.push(prompt);
  return problems.length ? { problems } : { stream, problems };
}

/**
 * A prompt for a model whose prompt is fixed by training (a bundle) is refused, at the field
 * that sets it: the stream's own generation.prompt, else defaults.generation.prompt.
 */
function promptProblem(
  raw: RawStreamConfig,
  defaults: ServeConfig['defaults'],
  model: string,
  configDir: string,
  at: string,
): ConfigProblem | undefined {
  const own = raw.generation?.prompt !== undefined;
  if (!own && defaults.generation.prompt === undefined) return undefined;
  const ref = raw.model ?? model;
  if (refTakesPrompt(ref, configDir) !== false) return undefined;
  const where = own ? `${at ? `${at}.` : ''}generation.prompt` : 'defaults.generation.prompt';
  return {
    path: where,
    message: `the model "${ref}" was trained with a fixed prompt and takes no prompt of its own; remove it, or use a model that takes one (hf:<org>/<name> or a Hugging Face directory)`,
  };
}

/** The prompt rule over the config's streams: each offending field once, with its line. */
function promptProblems(
  rawStreams: RawStreamConfig[],
  ctx: { defaults: ServeConfig['defaults']; model: string; configDir: string; lineOf: LineOf },
): ConfigProblem[] {
  const found = new Map<string, ConfigProblem>();
  rawStreams.forEach((s, i) => {
    const p = promptProblem(s, ctx.defaults, ctx.model, ctx.configDir, `streams[${i}]`);
    if (!p || found.has(p.path)) return;
    const at = p.path.startsWith('defaults') ? ['defaults', 'generation', 'prompt'] : ['streams', i, 'generation', 'prompt'];
    found.set(p.path, { ...p, line: ctx.lineOf(at) });
  });
  return [...found.values()];
}

/** The schema-valid config resolved: secrets read, defaults applied, paths made absolute, cross-field rules checked. */
function resolveConfig(raw: RawConfig, options: ParseOptions, problems: ConfigProblem[], lineOf: LineOf): ServeConfig {
  const env = options.env ?? process.env;
  const configDir = options.configPath ? path.dirname(options.configPath) : process.cwd();
  const secrets: SecretContext = { configDir, env, problems, lineOf };
  const auth = resolveAuth(raw, secrets);
  const restart = mergeRestart(DEFAULTS.restart, raw.defaults?.restart);
  problems.push(...restartProblems(restart, 'defaults.restart', 'defaults.restart.maxDelayMs', lineOf(['defaults', 'restart', 'initialDelayMs'])));
  const defaults: ServeConfig['defaults'] = {
    fps: raw.defaults?.fps ?? DEFAULTS.fps,
    generation: engineGeneration(raw.defaults?.generation),
    restart,
  };
  const model = raw.model ?? DEFAULTS.model;
  const limits = resolveLimits(raw, problems, lineOf);
  const cluster = resolveCluster(raw, limits, secrets);

  const rawStreams = raw.streams ?? [];
  if (rawStreams.length > limits.maxStreams) {
    problems.push({ path: 'streams', message: `${rawStreams.length} streams exceed limits.maxStreams (${limits.maxStreams})`, line: lineOf(['streams']) });
  }
  problems.push(...crossStreamProblems(raw, lineOf));
  const streams = rawStreams.map((s, i) => {
    const stream = resolveStream(s, defaults, model, configDir);
    problems.push(...restartProblems(stream.restart, `streams[${i}].restart`, 'restart.maxDelayMs', lineOf(['streams', i, 'restart'])));
    return stream;
  });
  problems.push(...promptProblems(rawStreams, { defaults, model, configDir, lineOf }));

  return {
    ...(options.configPath !== undefined ? { configPath: options.configPath } : {}),
    listen: { host: raw.listen?.host ?? DEFAULTS.host, port: raw.listen?.port ?? DEFAULTS.port },
    auth,
    model,
    engine: raw.engine ?? {},
    ...(raw.worker !== undefined ? { worker: raw.worker } : {}),
    ingest: raw.ingest ?? {},
    defaults,
    streams,
    outputs: resolveOutputs(raw, secrets),
    limits,
    dataDir: resolveDataDir(raw, configDir, env),
    captionLog: {
      retentionDays: raw.captionLog?.retentionDays ?? DEFAULTS.retentionDays,
      fsync: raw.captionLog?.fsync ?? DEFAULTS.fsync,
    },
    log: { level: raw.log?.level ?? DEFAULTS.logLevel },
    ...(cluster ? { cluster } : {}),
    warnings: renamedFieldWarnings(raw, lineOf),
  };
}

/** The MQTT and YouTube outputs: secrets read, TLS file paths made absolute, URLs checked. */
function resolveOutputs(raw: RawConfig, ctx: SecretContext): OutputsConfig {
  const { configDir, problems, lineOf } = ctx;
  const secret = (s: RawSecret, parts: PropertyKey[]): string | undefined => resolveSecret(s, formatPath(parts), ctx, parts, ANY_SECRET);
  const youtube = (raw.outputs?.youtube ?? []).flatMap((y, i) => {
    const parts = ['outputs', 'youtube', i, 'url'];
    const url = secret(y.url, parts);
    if (url === undefined) return [];
    if (!HTTP_URL_RE.test(url)) {
      problems.push({ path: formatPath(parts), message: 'must be the http(s) caption ingestion URL YouTube gives the broadcast', line: lineOf(parts) });
      return [];
    }
    return [{ stream: y.stream, url, clockOffsetMs: y.clockOffsetMs ?? 0, minIntervalMs: y.minIntervalMs ?? 1000, ...(y.region !== undefined ? { region: y.region } : {}) }];
  });
  const m = raw.outputs?.mqtt;
  if (!m) return { youtube };
  const password = m.password !== undefined ? secret(m.password, ['outputs', 'mqtt', 'password']) : undefined;
  const tls = m.tls && {
    ...definedFields(m.tls),
    ...Object.fromEntries((['ca', 'cert', 'key'] as const).flatMap((k) => (m.tls?.[k] !== undefined ? [[k, path.resolve(configDir, m.tls[k])]] : []))),
  };
  const mqtt = {
    url: m.url,
    topicPrefix: m.topicPrefix ?? MQTT_DEFAULTS.topicPrefix,
    qos: m.qos ?? MQTT_DEFAULTS.qos,
    tokens: m.tokens ?? false,
    ...definedFields({ username: m.username, clientId: m.clientId, password, tls }),
  };
  return { mqtt, youtube };
}

/** A node id from the host name: what STREAM_ID_RE allows, at most 64 characters. */
export function defaultNodeId(hostname: string = os.hostname()): string {
  const id = hostname.replace(/[^A-Za-z0-9_-]/g, '-').replace(/^[-_]+/, '').slice(0, 64);
  return id || 'node';
}

/** The cluster section resolved (absent: undefined): the Redis URL read, defaults applied, timing rules checked. */
function resolveCluster(raw: RawConfig, limits: ServeConfig['limits'], ctx: SecretContext): ClusterConfig | undefined {
  const c = raw.cluster;
  if (!c) return undefined;
  const { problems, lineOf } = ctx;
  const redisUrl = resolveSecret(c.redis, 'cluster.redis', ctx, ['cluster', 'redis'], ANY_SECRET);
  if (redisUrl !== undefined && typeof c.redis !== 'string' && !REDIS_URL_RE.test(redisUrl)) {
    problems.push({ path: 'cluster.redis', message: `${REDIS_URL_RULE} (the value read is not one)`, line: lineOf(['cluster', 'redis']) });
  }
  const leaseMs = c.leaseMs ?? DEFAULTS.cluster.leaseMs;
  const renewEveryMs = c.renewEveryMs ?? Math.max(50, Math.floor(leaseMs / 3));
  if (renewEveryMs * 2 > leaseMs) {
    problems.push({ path: 'cluster.renewEveryMs', message: `must be at most half of cluster.leaseMs (${leaseMs}), so that a lease is renewed at least twice before it expires`, line: lineOf(['cluster', 'renewEveryMs']) });
  }
  return {
    redisUrl: redisUrl ?? '',
    nodeId: c.nodeId ?? defaultNodeId(),
    maxStreams: c.maxStreams ?? limits.maxStreams,
    leaseMs,
    renewEveryMs,
    keyPrefix: c.keyPrefix ?? DEFAULTS.cluster.keyPrefix,
    captionStream: {
      maxLen: c.captionStream?.maxLen ?? DEFAULTS.cluster.maxLen,
      ...(c.captionStream?.maxAgeSeconds !== undefined ? { maxAgeSeconds: c.captionStream.maxAgeSeconds } : {}),
    },
    bufferLimit: c.bufferLimit ?? DEFAULTS.cluster.bufferLimit,
    archive: c.archive ?? false,
  };
}

/** The token lists, secrets read; a token is required unless auth is explicitly off. */
function resolveAuth(raw: RawConfig, ctx: SecretContext): ServeConfig['auth'] {
  const { problems, lineOf } = ctx;
  const secrets = (list: 'tokens' | 'adminTokens'): string[] => {
    const values: string[] = [];
    (raw.auth?.[list] ?? []).forEach((s, i) => {
      const v = resolveSecret(s, `auth.${list}[${i}]`, ctx, ['auth', list, i]);
      if (v !== undefined) values.push(v);
    });
    return values;
  };
  const tokens = secrets('tokens');
  const adminTokens = secrets('adminTokens');
  const required = raw.auth?.required ?? true;
  if (required && (raw.auth?.tokens ?? []).length === 0 && (raw.auth?.adminTokens ?? []).length === 0) {
    problems.push({
      path: 'auth.tokens',
      message: 'at least one token is required (or set auth.required: false to run without authentication)',
      line: lineOf(['auth']),
    });
  }
  return {
    required,
    tokens,
    adminTokens,
    allowedOrigins: raw.auth?.allowedOrigins ?? [],
    protectMetrics: raw.auth?.protectMetrics ?? false,
  };
}

function resolveLimits(raw: RawConfig, problems: ConfigProblem[], lineOf: LineOf): ServeConfig['limits'] {
  const limits = { ...DEFAULTS.limits };
  for (const [k, v] of Object.entries(raw.limits ?? {})) if (v !== undefined) (limits as Record<string, number>)[k] = v;
  if (limits.clientSoftBufferBytes >= limits.clientBufferBytes) {
    problems.push({
      path: 'limits.clientSoftBufferBytes',
      message: `must be smaller than limits.clientBufferBytes (${limits.clientBufferBytes})`,
      line: lineOf(['limits', 'clientSoftBufferBytes']),
    });
  }
  return limits;
}

/** dataDir from the file, else systemd's $STATE_DIRECTORY, else data/ beside the config. */
function resolveDataDir(raw: RawConfig, configDir: string, env: NodeJS.ProcessEnv): string {
  if (raw.dataDir !== undefined) return path.resolve(configDir, raw.dataDir);
  if (env.STATE_DIRECTORY) return path.resolve(env.STATE_DIRECTORY.split(':')[0] ?? env.STATE_DIRECTORY);
  return path.resolve(configDir, 'data');
}

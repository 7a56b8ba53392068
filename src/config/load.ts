/**
 * Loading and validating the serve config. Every problem is reported with the field's
 * path (`streams[2].input`) and, for YAML files, its line: `streams[2].input: unsupported
 * scheme "rtps" (line 14)`. All problems are collected, not just the first.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import {
  DEFAULTS,
  rawConfigSchema,
  rawStreamSchema,
  type RawConfig,
  type RawSecret,
  type RawStreamConfig,
  type RestartPolicy,
  type ServeConfig,
  type StreamConfig,
} from './schema.js';
import { validateStreamInput } from './input.js';
import { refTakesPrompt } from '../model-ref.js';

export interface ConfigProblem {
  /** Field path, e.g. `streams[2].input`; empty for the document itself. */
  path: string;
  message: string;
  /** 1-based line in the YAML file, when known. */
  line?: number;
}

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

export function formatPath(parts: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of parts) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
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
  const lineOf = (parts: ReadonlyArray<PropertyKey>): number | undefined => lineOfPath(doc, lineCounter, parts);

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

function zodProblems(error: z.ZodError, lineOf: (parts: ReadonlyArray<PropertyKey>) => number | undefined): ConfigProblem[] {
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
      message = 'must be a token string (at least 16 characters), {env: NAME} or {file: PATH}';
    }
    problems.push({ path: formatPath(issue.path), message, line: lineOf(issue.path) });
  }
  return problems;
}

/** Checks across streams that need no valid schema: duplicate ids, more than one stdin reader. */
function crossStreamProblems(data: unknown, lineOf: (parts: ReadonlyArray<PropertyKey>) => number | undefined): ConfigProblem[] {
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

function resolveSecret(
  secret: RawSecret,
  at: string,
  configDir: string,
  env: NodeJS.ProcessEnv,
  problems: ConfigProblem[],
  lineOf: (p: ReadonlyArray<PropertyKey>) => number | undefined,
  parts: PropertyKey[],
): string | undefined {
  let value: string | undefined;
  if (typeof secret === 'string') return secret;
  if ('env' in secret) {
    value = env[secret.env]?.trim();
    if (!value) {
      problems.push({ path: `${at}.env`, message: `environment variable ${secret.env} is not set or empty`, line: lineOf([...parts, 'env']) });
      return undefined;
    }
  } else {
    // $CREDENTIALS_DIRECTORY (systemd LoadCredential=) for relative names, else the config dir.
    const base = env.CREDENTIALS_DIRECTORY && !path.isAbsolute(secret.file) ? env.CREDENTIALS_DIRECTORY : configDir;
    const file = path.resolve(base, secret.file);
    try {
      value = readFileSync(file, 'utf8').trim();
    } catch (err) {
      problems.push({ path: `${at}.file`, message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, line: lineOf([...parts, 'file']) });
      return undefined;
    }
  }
  if (value.length < 16) {
    problems.push({ path: at, message: 'tokens must be at least 16 characters', line: lineOf(parts) });
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
    generation: { ...defaults.generation, ...(raw.generation ?? {}) },
    enabled: raw.enabled ?? true,
    restart: mergeRestart(defaults.restart, raw.restart),
  };
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
  const problems: ConfigProblem[] = [];
  const restart = mergeRestart(config.defaults.restart, parsed.data.restart);
  if (restart.initialDelayMs > restart.maxDelayMs) {
    problems.push({ path: `${prefix ? `${prefix}.` : ''}restart.initialDelayMs`, message: 'must not exceed restart.maxDelayMs' });
  }
  const configDir = config.configPath ? path.dirname(config.configPath) : process.cwd();
  const prompt = promptProblem(parsed.data, config.defaults, config.model, configDir, prefix);
  if (prompt) problems.push(prompt);
  if (problems.length) return { problems };
  return { stream: resolveStream(parsed.data, config.defaults, config.model, configDir), problems };
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

function resolveConfig(
  raw: RawConfig,
  options: ParseOptions,
  problems: ConfigProblem[],
  lineOf: (p: ReadonlyArray<PropertyKey>) => number | undefined,
): ServeConfig {
  const env = options.env ?? process.env;
  const configDir = options.configPath ? path.dirname(options.configPath) : process.cwd();

  const tokens: string[] = [];
  const adminTokens: string[] = [];
  (raw.auth?.tokens ?? []).forEach((s, i) => {
    const v = resolveSecret(s, `auth.tokens[${i}]`, configDir, env, problems, lineOf, ['auth', 'tokens', i]);
    if (v !== undefined) tokens.push(v);
  });
  (raw.auth?.adminTokens ?? []).forEach((s, i) => {
    const v = resolveSecret(s, `auth.adminTokens[${i}]`, configDir, env, problems, lineOf, ['auth', 'adminTokens', i]);
    if (v !== undefined) adminTokens.push(v);
  });
  const required = raw.auth?.required ?? true;
  if (required && (raw.auth?.tokens ?? []).length === 0 && (raw.auth?.adminTokens ?? []).length === 0) {
    problems.push({
      path: 'auth.tokens',
      message: 'at least one token is required (or set auth.required: false to run without authentication)',
      line: lineOf(['auth']),
    });
  }

  const restart = mergeRestart(DEFAULTS.restart, raw.defaults?.restart);
  if (restart.initialDelayMs > restart.maxDelayMs) {
    problems.push({ path: 'defaults.restart.initialDelayMs', message: 'must not exceed defaults.restart.maxDelayMs', line: lineOf(['defaults', 'restart', 'initialDelayMs']) });
  }
  const defaults: ServeConfig['defaults'] = {
    fps: raw.defaults?.fps ?? DEFAULTS.fps,
    generation: { ...(raw.defaults?.generation ?? {}) },
    restart,
  };
  const model = raw.model ?? DEFAULTS.model;

  const limits = { ...DEFAULTS.limits };
  for (const [k, v] of Object.entries(raw.limits ?? {})) if (v !== undefined) (limits as Record<string, number>)[k] = v;
  if (limits.clientSoftBufferBytes >= limits.clientBufferBytes) {
    problems.push({
      path: 'limits.clientSoftBufferBytes',
      message: `must be smaller than limits.clientBufferBytes (${limits.clientBufferBytes})`,
      line: lineOf(['limits', 'clientSoftBufferBytes']),
    });
  }

  const rawStreams = raw.streams ?? [];
  if (rawStreams.length > limits.maxStreams) {
    problems.push({ path: 'streams', message: `${rawStreams.length} streams exceed limits.maxStreams (${limits.maxStreams})`, line: lineOf(['streams']) });
  }
  problems.push(...crossStreamProblems(raw, lineOf));
  const streams: StreamConfig[] = [];
  rawStreams.forEach((s, i) => {
    const r = mergeRestart(defaults.restart, s.restart);
    if (r.initialDelayMs > r.maxDelayMs) {
      problems.push({ path: `streams[${i}].restart.initialDelayMs`, message: 'must not exceed restart.maxDelayMs', line: lineOf(['streams', i, 'restart']) });
    }
    streams.push(resolveStream(s, defaults, model, configDir));
    const p = promptProblem(s, defaults, model, configDir, `streams[${i}]`);
    if (p && !problems.some((q) => q.path === p.path)) problems.push({ ...p, line: lineOf(p.path.startsWith('defaults') ? ['defaults', 'generation', 'prompt'] : ['streams', i, 'generation', 'prompt']) });
  });

  const dataDir = raw.dataDir !== undefined
    ? path.resolve(configDir, raw.dataDir)
    : env.STATE_DIRECTORY
      ? path.resolve(env.STATE_DIRECTORY.split(':')[0] ?? env.STATE_DIRECTORY)
      : path.resolve(configDir, 'data');

  return {
    ...(options.configPath !== undefined ? { configPath: options.configPath } : {}),
    listen: { host: raw.listen?.host ?? DEFAULTS.host, port: raw.listen?.port ?? DEFAULTS.port },
    auth: {
      required,
      tokens,
      adminTokens,
      allowedOrigins: raw.auth?.allowedOrigins ?? [],
      protectMetrics: raw.auth?.protectMetrics ?? false,
    },
    model,
    ...(raw.worker !== undefined ? { worker: raw.worker } : {}),
    defaults,
    streams,
    limits,
    dataDir,
    captionLog: {
      retentionDays: raw.captionLog?.retentionDays ?? DEFAULTS.retentionDays,
      fsync: raw.captionLog?.fsync ?? DEFAULTS.fsync,
    },
    log: { level: raw.log?.level ?? DEFAULTS.logLevel },
  };
}

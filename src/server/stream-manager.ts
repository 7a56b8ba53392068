/**
 * The set of streams: created from the config file and the HTTP API, reconciled on reload
 * so that only added, changed and removed streams are touched. Streams added through the
 * API are kept in `<dataDir>/streams.api.json` and come back after a restart.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { ServeConfig, StreamConfig } from '../config/schema.js';
import { parseStream } from '../config/load.js';
import { clip } from '../logger.js';
import { writeFileAtomic, type CommittedEvent } from '../sinks/caption-log.js';
import type { ReplaySource } from './hub.js';
import { StreamRunner, type RunnerDeps, type StreamInfo } from './stream-runner.js';

export class StreamExistsError extends Error {}
export class StreamNotFoundError extends Error {}
export class StreamOwnershipError extends Error {}
export class StreamLimitError extends Error {}

/** One stream as the server uses it: what the hub replays, what the HTTP API reports. */
export interface ManagedStream extends ReplaySource {
  info(): StreamInfo;
  /** Committed events after a seq (HTTP history). */
  history(after: number, limit: number): Promise<CommittedEvent[]>;
}

/**
 * The daemon's set of streams, as the server and its routes use it: this StreamManager, or
 * in cluster mode ClusterStreams (src/server/cluster-streams.ts).
 */
export interface Streams {
  /** Prepares every stream so that resuming clients can be served (before listening). */
  init(config: ServeConfig): Promise<void>;
  /** The model is loaded: start (or, in cluster mode, claim) streams. */
  startAll(): void;
  get(id: string): ManagedStream | undefined;
  ids(): string[];
  list(): StreamInfo[];
  collectStats(): void;
  pruneLogs(): Promise<void>;
  add(stream: StreamConfig, raw: unknown): Promise<StreamInfo>;
  replace(stream: StreamConfig, raw: unknown): Promise<StreamInfo>;
  remove(id: string): Promise<void>;
  applyConfig(config: ServeConfig): Promise<{ added: string[]; changed: string[]; removed: string[] }>;
  setMaxStreams(n: number): void;
  closeAll(reason: string): Promise<void>;
  /** Cluster mode: this node, who owns what, Redis and buffer state (hello, /readyz). */
  cluster?(): ClusterView;
}

export interface ClusterView {
  node: string;
  owners: Record<string, string | null>;
  degraded: boolean;
  status: Record<string, unknown>;
}

export class StreamManager implements Streams {
  private readonly runners = new Map<string, StreamRunner>();
  /** Raw request bodies of API-managed streams (persisted). */
  private apiRaw = new Map<string, unknown>();
  private running = false;
  private closing = false;
  private mutex: Promise<unknown> = Promise.resolve();
  private readonly apiStorePath: string;

  constructor(
    private readonly deps: RunnerDeps,
    private maxStreams: number,
  ) {
    this.apiStorePath = path.join(deps.dataDir, 'streams.api.json');
  }

  /** Creates runners (opens their logs, so resuming clients can be served) without starting pipelines. */
  async init(config: ServeConfig): Promise<void> {
    await mkdir(this.deps.dataDir, { recursive: true });
    for (const s of config.streams) await this.create(s, 'config');
    for (const [id, raw] of await this.loadApiStore()) {
      if (this.runners.has(id)) {
        this.deps.logger.warn({ stream: id }, 'stream added through the API is now defined in the config file; the config wins');
        continue;
      }
      const { stream, problems } = parseStream(raw, config);
      if (!stream) {
        this.deps.logger.error({ stream: id, problems }, 'stream saved from the API is no longer valid; skipped');
        continue;
      }
      this.apiRaw.set(id, raw);
      await this.create(stream, 'api');
    }
    await this.saveApiStore();
  }

  setMaxStreams(n: number): void {
    this.maxStreams = n;
  }

  /** The model is ready: start every enabled stream. */
  startAll(): void {
    this.running = true;
    for (const r of this.runners.values()) r.start();
  }

  get(id: string): StreamRunner | undefined {
    return this.runners.get(id);
  }

  ids(): string[] {
    return [...this.runners.keys()];
  }

  list(): StreamInfo[] {
    return [...this.runners.values()].map((r) => r.info());
  }

  collectStats(): void {
    for (const r of this.runners.values()) r.collectStats();
  }

  async pruneLogs(): Promise<void> {
    for (const r of this.runners.values()) {
      const n = await r.pruneLog().catch(() => 0);
      if (n > 0) r.logger.info({ removed: n }, 'caption log: old segments removed');
    }
  }

  add(stream: StreamConfig, raw: unknown): Promise<StreamInfo> {
    return this.exclusive(async () => {
      if (this.runners.has(stream.id)) throw new StreamExistsError(`stream "${stream.id}" already exists`);
      if (this.runners.size >= this.maxStreams) throw new StreamLimitError(`stream limit reached (limits.maxStreams = ${this.maxStreams})`);
      const r = await this.create(stream, 'api');
      this.apiRaw.set(stream.id, raw);
      await this.saveApiStore();
      if (this.running) r.start();
      this.deps.logger.info({ stream: stream.id, input: clip(stream.input) }, 'stream added');
      return r.info();
    });
  }

  replace(stream: StreamConfig, raw: unknown): Promise<StreamInfo> {
    return this.exclusive(async () => {
      const r = this.runners.get(stream.id);
      if (!r) throw new StreamNotFoundError(`stream "${stream.id}" does not exist`);
      if (r.source === 'config') throw new StreamOwnershipError(`stream "${stream.id}" is defined in the config file; change it there and reload (SIGHUP)`);
      await this.reconfigure(r, stream);
      this.apiRaw.set(stream.id, raw);
      await this.saveApiStore();
      return r.info();
    });
  }

  remove(id: string): Promise<void> {
    return this.exclusive(async () => {
      const r = this.runners.get(id);
      if (!r) throw new StreamNotFoundError(`stream "${id}" does not exist`);
      if (r.source === 'config') throw new StreamOwnershipError(`stream "${id}" is defined in the config file; remove it there and reload (SIGHUP)`);
      await this.destroy(r, 'stream removed');
      this.apiRaw.delete(id);
      await this.saveApiStore();
    });
  }

  /** Reconciles the config file's streams (reload): only what changed is touched. */
  applyConfig(config: ServeConfig): Promise<{ added: string[]; changed: string[]; removed: string[] }> {
    return this.exclusive(async () => {
      const result = { added: [] as string[], changed: [] as string[], removed: [] as string[] };
      const wanted = new Map(config.streams.map((s) => [s.id, s]));
      for (const r of [...this.runners.values()]) {
        if (r.source === 'config' && !wanted.has(r.id)) {
          await this.destroy(r, 'stream removed from config');
          result.removed.push(r.id);
        }
      }
      for (const s of config.streams) {
        const r = this.runners.get(s.id);
        if (!r) {
          const created = await this.create(s, 'config');
          if (this.running) created.start();
          result.added.push(s.id);
        } else if (r.source === 'api') {
          this.deps.logger.warn({ stream: s.id }, 'config file now defines a stream added through the API; the config wins');
          r.source = 'config';
          this.apiRaw.delete(s.id);
          if (!isDeepStrictEqual(r.config, s)) await this.reconfigure(r, s);
          result.changed.push(s.id);
        } else if (!isDeepStrictEqual(r.config, s)) {
          await this.reconfigure(r, s);
          result.changed.push(s.id);
        }
      }
      await this.saveApiStore();
      return result;
    });
  }

  /** Stops every stream (each finishes its frame in hand) and closes their logs. */
  closeAll(reason: string): Promise<void> {
    this.closing = true;
    return this.exclusive(async () => {
      await Promise.all([...this.runners.values()].map((r) => r.close(reason).catch((err: unknown) => r.logger.error({ err }, 'stream close failed'))));
    });
  }

  private async create(stream: StreamConfig, source: 'config' | 'api'): Promise<StreamRunner> {
    const r = await StreamRunner.create(stream, source, this.deps);
    this.runners.set(stream.id, r);
    return r;
  }

  private async reconfigure(r: StreamRunner, stream: StreamConfig): Promise<void> {
    await r.reconfigure(stream);
    if (this.running && !this.closing) r.start();
    this.deps.logger.info({ stream: stream.id, enabled: stream.enabled }, 'stream changed');
  }

  private async destroy(r: StreamRunner, reason: string): Promise<void> {
    await r.close(reason);
    this.runners.delete(r.id);
    this.deps.metrics.removeStream(r.id);
    this.deps.logger.info({ stream: r.id, reason }, 'stream removed');
  }

  private async loadApiStore(): Promise<Array<[string, unknown]>> {
    let text: string;
    try {
      text = await readFile(this.apiStorePath, 'utf8');
    } catch {
      return [];
    }
    try {
      const data = JSON.parse(text) as { streams?: unknown[] };
      return (data.streams ?? []).flatMap((s) => {
        const id = (s as { id?: unknown } | null)?.id;
        return typeof id === 'string' ? [[id, s] as [string, unknown]] : [];
      });
    } catch (err) {
      this.deps.logger.error({ err, file: this.apiStorePath }, 'cannot parse the saved API streams; ignored');
      return [];
    }
  }

  private async saveApiStore(): Promise<void> {
    const data = { streams: [...this.apiRaw.values()] };
    try {
      await writeFileAtomic(this.apiStorePath, JSON.stringify(data, null, 2) + '\n');
    } catch (err) {
      this.deps.logger.error({ err, file: this.apiStorePath }, 'cannot save the API streams');
    }
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.mutex.then(task, task);
    this.mutex = run.catch(() => undefined);
    return run;
  }
}

/**
 * The stream list of the cluster: one Redis hash (id → record), the one source of truth for
 * which streams exist. Config files seed it (each node writes its file's streams when absent
 * or different), the HTTP API of any node changes it, and every change is announced on the
 * `changes` channel so that all nodes reconcile at once.
 */
import type { Redis } from 'ioredis';
import type { StreamConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { ClusterKeys } from './keys.js';

/** A stream as the cluster stores it: where it was defined, and its resolved config. */
export interface StreamRecord {
  source: 'config' | 'api';
  config: StreamConfig;
}

export type PutResult = 'ok' | 'same' | 'exists' | 'missing' | 'config' | 'limit';
export type DeleteResult = 'ok' | 'missing' | 'config';

/** Checks a stored stream config (written by any node) before it is used; undefined when invalid. */
export type StreamValidator = (config: unknown) => StreamConfig | undefined;

export function encodeRecord(record: StreamRecord): string {
  return JSON.stringify({ source: record.source, config: record.config });
}

export class StreamRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly validate: StreamValidator,
    private readonly logger: Logger,
  ) {}

  /** Every stream of the cluster; records that do not parse are logged and left out. */
  async all(): Promise<Map<string, StreamRecord>> {
    const raw = await this.redis.hgetall(this.keys.streams);
    const out = new Map<string, StreamRecord>();
    for (const [id, json] of Object.entries(raw)) {
      const record = this.decode(id, json);
      if (record) out.set(id, record);
    }
    return out;
  }

  /** Writes a config file's streams that are absent or different; returns the ids written. */
  async seed(streams: StreamConfig[]): Promise<string[]> {
    const written: string[] = [];
    for (const config of streams) {
      const r = await this.put({ source: 'config', config }, 'seed', Number.MAX_SAFE_INTEGER);
      if (r === 'ok') written.push(config.id);
    }
    return written;
  }

  /** 'add' (refused when present or when `limit` streams exist), 'replace' (refused when absent or from a config file), 'seed'. */
  put(record: StreamRecord, mode: 'add' | 'replace' | 'seed', limit = Number.MAX_SAFE_INTEGER): Promise<PutResult> {
    return this.redis.casaPutStream(this.keys.streams, record.config.id, encodeRecord(record), mode, this.keys.changes, limit) as Promise<PutResult>;
  }

  /** Removes a stream: 'api' refuses a config file's stream, 'config' (a reload) removes it. */
  delete(id: string, mode: 'api' | 'config'): Promise<DeleteResult> {
    return this.redis.casaDeleteStream(this.keys.streams, id, mode, this.keys.changes) as Promise<DeleteResult>;
  }

  private decode(id: string, json: string): StreamRecord | undefined {
    try {
      const data = JSON.parse(json) as { source?: unknown; config?: unknown };
      const config = this.validate(data.config);
      if ((data.source === 'config' || data.source === 'api') && config && config.id === id) return { source: data.source, config };
    } catch {
      // not JSON: reported below
    }
    this.logger.error({ stream: id }, 'cluster: a stream record in Redis is not valid; ignored (fix or remove it through the API)');
    return undefined;
  }
}

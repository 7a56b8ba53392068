/**
 * Connections to Redis (ioredis). A node holds three: `commands` (leases, appends, the
 * registry), `events` (pub/sub: stream changes and released leases) and `tail` (blocking
 * reads of the streams' event logs). Each reconnects by itself with the project's backoff
 * rule; commands fail at once while disconnected (no offline queue, nothing re-sent blindly:
 * the callers retry what is safe to retry, and every write is idempotent or fenced).
 */
import { Redis } from 'ioredis';
import { backoffDelay } from '../ingest/backoff.js';
import type { Logger } from '../logger.js';
import { RedisUnavailableError } from './errors.js';
import { defineScripts } from './scripts.js';

export type RedisRole = 'commands' | 'events' | 'tail';

/** Reconnect delays: from 100 ms, doubling, at most 2 s apart. */
export const RECONNECT = { initialMs: 100, maxMs: 2000 } as const;

export interface RedisOptions {
  url: string;
  nodeId: string;
  /** A command without a reply after this long fails (commands connection). */
  commandTimeoutMs: number;
  logger: Logger;
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)([^@/]*:)?[^@/]*@/, (_m, scheme: string, user: string | undefined) => `${scheme}${user ?? ''}***@`);
}

/** A connection for one role, not yet connected (see connectWithin). */
export function openRedis(role: RedisRole, opts: RedisOptions): Redis {
  const redis = new Redis(opts.url, {
    lazyConnect: true,
    connectionName: `casa-live:${opts.nodeId}:${role}`,
    // The pub/sub connection re-subscribes through its queue after a reconnect.
    enableOfflineQueue: role === 'events',
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: role === 'events' ? null : 0,
    retryStrategy: (times) => backoffDelay(times, RECONNECT.initialMs, RECONNECT.maxMs),
    connectTimeout: 2000,
    ...(role === 'commands' ? { commandTimeout: opts.commandTimeoutMs } : {}),
    // A blocking read on a dead socket (Redis stopped, not closed) ends after its BLOCK time.
    ...(role === 'tail' ? { blockingTimeout: 1, blockingTimeoutGrace: 1000 } : {}),
  });
  if (role === 'commands') defineScripts(redis);
  const log = opts.logger.child({ redis: role });
  redis.on('error', (err: Error) => log.debug({ err: err.message }, 'redis connection error'));
  return redis;
}

/** Connects, retrying until `timeoutMs`; throws RedisUnavailableError with the URL (password hidden). */
export async function connectWithin(redis: Redis, url: string, timeoutMs: number): Promise<void> {
  let lastError = 'no answer';
  const onError = (err: Error): void => {
    lastError = err.message;
  };
  redis.on('error', onError);
  try {
    redis.connect().catch(() => undefined);
    const deadline = Date.now() + timeoutMs;
    while (redis.status !== 'ready') {
      if (Date.now() > deadline || redis.status === 'end') {
        redis.disconnect();
        throw new RedisUnavailableError(
          `cannot reach Redis at ${redactUrl(url)} (${lastError}); check cluster.redis and that redis-server is running and reachable from this host`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    redis.off('error', onError);
  }
}

/** Resolves when the connection is ready again (or at once if it is). */
export function whenReady(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => redis.once('ready', () => resolve()));
}

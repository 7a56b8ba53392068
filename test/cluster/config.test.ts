// The cluster section of the serve config: defaults, the Redis URL as a secret, and every
// problem by field path (and line).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigInvalidError, parseConfig } from '../../src/config/index.js';
import { defaultNodeId } from '../../src/config/load.js';

const dir = mkdtempSync(path.join(tmpdir(), 'casa-cluster-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function parse(cluster: string, env: NodeJS.ProcessEnv = {}) {
  return parseConfig(`auth: { required: false }\nlimits: { maxStreams: 200 }\ncluster: ${cluster}\n`, { configPath: path.join(dir, 'x.yaml'), env });
}

function problemsOf(cluster: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parse(cluster, env);
  } catch (err) {
    if (err instanceof ConfigInvalidError) return err.details;
    throw err;
  }
  return [];
}

describe('cluster config', () => {
  it('applies defaults: node id from the host name, lease 5 s renewed every third, capacity limits.maxStreams', () => {
    const c = parse('{ redis: "redis://127.0.0.1:6379" }').cluster!;
    expect(c).toEqual({
      redisUrl: 'redis://127.0.0.1:6379',
      nodeId: defaultNodeId(),
      maxStreams: 200,
      leaseMs: 5000,
      renewEveryMs: 1666,
      keyPrefix: 'casa-live',
      captionStream: { maxLen: 100_000 },
      bufferLimit: 100_000,
      archive: false,
    });
    expect(defaultNodeId('cam-host.example.org')).toBe('cam-host-example-org');
    expect(defaultNodeId('...')).toBe('node');
    // Without the section the daemon runs alone.
    expect(parseConfig('auth: { required: false }').cluster).toBeUndefined();
  });

  it('reads the Redis URL inline, from the environment or from a file (a password stays out of the config)', () => {
    writeFileSync(path.join(dir, 'redis-url'), 'rediss://casa:s3cret@redis.example.org:6380/2\n');
    expect(parse('{ redis: { file: redis-url } }').cluster!.redisUrl).toBe('rediss://casa:s3cret@redis.example.org:6380/2');
    expect(parse('{ redis: { env: REDIS_URL } }', { REDIS_URL: 'redis://10.0.0.5:6379' }).cluster!.redisUrl).toBe('redis://10.0.0.5:6379');
    expect(problemsOf('{ redis: { env: REDIS_URL } }', { REDIS_URL: 'http://nope' })).toEqual([
      'cluster.redis: must be a redis:// or rediss:// URL (the value read is not one) (line 3)',
    ]);
    expect(problemsOf('{ redis: { env: NOPE } }')).toEqual(['cluster.redis.env: environment variable NOPE is not set or empty (line 3)']);
  });

  it('names every problem by its field path', () => {
    expect(problemsOf('{ redis: "http://x" }')).toEqual(['cluster.redis: must be a redis:// or rediss:// URL (line 3)']);
    expect(problemsOf('{ redis: 6379 }')).toEqual(['cluster.redis: must be a redis:// or rediss:// URL, {env: NAME} or {file: PATH} (line 3)']);
    expect(problemsOf('{ maxStreams: 4 }')).toEqual(['cluster.redis: must be a redis:// or rediss:// URL, {env: NAME} or {file: PATH} (line 3)']);
    expect(
      problemsOf('{ redis: "redis://h", nodeId: "a b", leaseMs: 100, keyPrefix: "a b", captionStream: { maxLen: 5, maxAgeSeconds: 1 }, bufferLimit: 1, extra: 1 }'),
    ).toEqual([
      expect.stringMatching(/^cluster\.nodeId: must be 1-64 characters/),
      expect.stringMatching(/^cluster\.leaseMs: /),
      expect.stringMatching(/^cluster\.keyPrefix: must be letters, digits/),
      expect.stringMatching(/^cluster\.captionStream\.maxLen: /),
      expect.stringMatching(/^cluster\.captionStream\.maxAgeSeconds: /),
      expect.stringMatching(/^cluster\.bufferLimit: /),
      'cluster.extra: unknown field (line 3)',
    ]);
    expect(problemsOf('{ redis: "redis://h", leaseMs: 1000, renewEveryMs: 600 }')).toEqual([
      'cluster.renewEveryMs: must be at most half of cluster.leaseMs (1000), so that a lease is renewed at least twice before it expires (line 3)',
    ]);
  });
});

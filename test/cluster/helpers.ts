/**
 * Helpers of the cluster tests: a real redis-server (Debian's, on 127.0.0.1, a free port, a
 * temp dir; AOF on where a test restarts it), a Redis client to look at what the nodes wrote,
 * and cluster nodes as real processes (`casa-live serve --config`, the built CLI).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { BIN, REPO_ROOT } from '../cli/helpers.js';
import { freePort, sleep, until } from '../server/helpers.js';

export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

export function redisAvailable(): boolean {
  return existsSync(REDIS_SERVER);
}

/** A redis-server of the test's own; restartable on the same port and data directory. */
export class RedisServer {
  private proc: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly appendfsync: 'always' | 'everysec' | undefined,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts one; `appendfsync` turns AOF on with that policy (absent: no persistence). */
  static async start(opts: { appendfsync?: 'always' | 'everysec' } = {}): Promise<RedisServer> {
    if (!redisAvailable()) throw new Error(`${REDIS_SERVER} not found: install Debian's redis-server (.ci/deps-server.sh does)`);
    const server = new RedisServer(await freePort(), mkdtempSync(path.join(tmpdir(), 'casa-redis-')), opts.appendfsync);
    await server.run();
    return server;
  }

  /** Runs redis-server (again, after stop()) on the same port and directory; resolves once it answers. */
  async run(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--protected-mode', 'no', '--loglevel', 'warning'];
    args.push('--appendonly', this.appendfsync ? 'yes' : 'no');
    if (this.appendfsync) args.push('--appendfsync', this.appendfsync);
    const proc = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const probe = new Redis(this.url, { lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: 0 });
    probe.on('error', () => undefined);
    try {
      await until(async () => {
        if (proc.exitCode !== null) throw new Error(`redis-server exited: ${out}`);
        await probe.connect().catch(() => undefined);
        return (await probe.ping().catch(() => '')) === 'PONG';
      }, 20_000, 'redis-server to answer');
    } finally {
      probe.disconnect();
    }
  }

  /** Stops it (SIGTERM: a clean shutdown; SIGKILL: a crash) and waits for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await gone;
  }

  async restart(signal: NodeJS.Signals = 'SIGKILL', downMs = 0): Promise<void> {
    await this.stop(signal);
    if (downMs > 0) await sleep(downMs);
    await this.run();
  }

  async close(): Promise<void> {
    await this.stop('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A client to look at the data (the caller disconnects it). */
  client(): Redis {
    const r = new Redis(this.url, { retryStrategy: () => 100, maxRetriesPerRequest: 1 });
    r.on('error', () => undefined);
    return r;
  }
}

/** One entry of a stream's event log, as the tests read it. */
export interface LoggedEvent {
  seq: number;
  type: string;
  /** The lease it was written under, "<node>:<epoch>". */
  lease: string;
  node: string;
  epoch: number;
  text?: string;
  state?: string;
}

export async function eventLog(redis: Redis, id: string, prefix = 'casa-live'): Promise<LoggedEvent[]> {
  const entries = (await redis.xrange(`${prefix}:events:${id}`, '-', '+')) as Array<[string, string[]]>;
  return entries.map(([entryId, fields]) => {
    const f = new Map<string, string>();
    for (let i = 0; i < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
    const ev = JSON.parse(f.get('e')!) as { type: string; seq: number; text?: string; state?: string };
    const lease = f.get('o')!;
    const cut = lease.lastIndexOf(':');
    expectId(entryId, ev.seq);
    return { seq: ev.seq, type: ev.type, lease, node: lease.slice(0, cut), epoch: Number(lease.slice(cut + 1)), text: ev.text, state: ev.state };
  });
}

function expectId(entryId: string, seq: number): void {
  if (entryId !== `0-${seq}`) throw new Error(`entry ${entryId} holds seq ${seq}`);
}

/** stream id → node id, from the leases in Redis. */
export async function leaseOwners(redis: Redis, ids: string[], prefix = 'casa-live'): Promise<Map<string, string>> {
  const values = ids.length ? await redis.mget(...ids.map((id) => `${prefix}:lease:${id}`)) : [];
  const out = new Map<string, string>();
  ids.forEach((id, i) => {
    const v = values[i];
    if (v) out.set(id, v.slice(0, v.lastIndexOf(':')));
  });
  return out;
}

/**
 * Whether a log is one sequence: seqs strictly increasing (no duplicate) and leases never
 * interleaved (once a later epoch wrote, no earlier one did again).
 */
export function checkOneSequence(log: LoggedEvent[]): string | undefined {
  for (let i = 1; i < log.length; i++) {
    const a = log[i - 1]!;
    const b = log[i]!;
    if (b.seq <= a.seq) return `seq ${b.seq} after ${a.seq}`;
    if (b.epoch < a.epoch) return `seq ${b.seq} written under ${b.lease} after ${a.lease} had written seq ${a.seq}`;
  }
  return undefined;
}

// ---- nodes as processes: the real CLI ------------------------------------------------------

export interface NodeProcess {
  id: string;
  child: ChildProcess;
  port: number;
  configPath: string;
  lines: () => Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Writes a node's config (YAML) in `dir`; returns its path. */
export function writeNodeConfig(dir: string, nodeId: string, fields: Record<string, unknown>): string {
  const file = path.join(dir, `${nodeId}.yaml`);
  writeFileSync(file, stringify({ listen: { host: '127.0.0.1', port: 0 }, auth: { required: false }, dataDir: path.join(dir, `data-${nodeId}`), log: { level: 'info' }, ...fields }));
  return file;
}

/** Starts `casa-live serve --config FILE`; resolves once it listens and its model is loaded. */
export async function startNode(id: string, configPath: string): Promise<NodeProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', '--config', configPath], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const parsed: Array<Record<string, unknown>> = [];
  let partial = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      if (!line.startsWith('{')) continue;
      try {
        parsed.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a partial line: ignored
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const early = exited.then((e) => {
    throw new Error(`node ${id} exited early (${e.code ?? e.signal}): ${stderr}`);
  });
  const listening = await Promise.race([until(() => parsed.find((l) => l.msg === 'casa-live serve listening'), 30_000, `node ${id} to listen`), early]);
  await Promise.race([until(() => parsed.find((l) => l.msg === 'model loaded'), 30_000, `node ${id}'s model`), early]);
  early.catch(() => undefined);
  return { id, child, port: listening.port as number, configPath, lines: () => parsed, exited };
}

/** The nodes' cluster log lines (leases acquired, released, lost; streams that could not start), oldest first: what an ownership assertion prints when it fails. */
export function clusterHistory(nodes: Iterable<NodeProcess>): string {
  const moves = [...nodes].flatMap((n) =>
    n.lines()
      .filter((l) => String(l.msg).startsWith('cluster: ') && l.msg !== 'cluster: joined')
      .map((l) => `${String(l.time)} ${n.id} ${String(l.stream)}: ${String(l.msg)}${l.reason ? ` (${String(l.reason)})` : ''}`),
  );
  return moves.sort().join('\n');
}

/** Kills every node still running (test teardown). */
export async function killNodes(nodes: Iterable<NodeProcess>): Promise<void> {
  await Promise.all(
    [...nodes].map(async (n) => {
      if (n.child.exitCode !== null || n.child.signalCode !== null) return;
      n.child.kill('SIGCONT');
      n.child.kill('SIGKILL');
      await n.exited;
    }),
  );
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * B8's Redis: Debian's redis-server (or $REDIS_SERVER) on 127.0.0.1, on a free port, with a
 * temporary directory and no persistence; close() stops it and removes the directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The redis-server binary B8 runs, when there is one. */
export function redisServerBinary(): string | undefined {
  const candidates = [process.env.REDIS_SERVER, '/usr/bin/redis-server', '/usr/local/bin/redis-server'];
  return candidates.find((c): c is string => typeof c === 'string' && c.length > 0 && existsSync(c));
}

function unusedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

export class BenchRedis {
  private constructor(
    private readonly proc: ChildProcess,
    readonly port: number,
    private readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts redis-server and resolves once it accepts connections (its own log line says so). */
  static async start(binary: string): Promise<BenchRedis> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'casa-bench-redis-'));
    const port = await unusedPort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--maxmemory-policy', 'noeviction'];
    const proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const redis = new BenchRedis(proc, port, dir);
    let said = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within 15 s: ${said.slice(-500)}`)), 15_000);
      const hear = (d: Buffer): void => {
        said += d.toString();
        if (said.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout?.on('data', hear);
      proc.stderr?.on('data', hear);
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${signal ?? code}): ${said.slice(-500)}`));
      });
    }).catch(async (err: unknown) => {
      await redis.close();
      throw err;
    });
    return redis;
  }

  /** Stops redis-server (SIGTERM, SIGKILL after 5 s) and removes its directory. */
  async close(): Promise<void> {
    const p = this.proc;
    if (p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

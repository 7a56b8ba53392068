/**
 * The daemon with a worker model (issue 22): `casa-live serve` with `model: torch:…`
 * serves two streams from ONE worker process (real WebSocket clients); when that worker
 * is killed, the streams report it, the model starts a new worker with backoff, and both
 * streams resume with new sessions; SIGTERM leaves no worker behind. Real CLI, real
 * worker (tools/casa_worker), real clips.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processesMentioning, spawnCli, tempDir } from '../cli/helpers.js';
import { TestClient, ensureBuilt, freePort, getJson, until, writeConfig, type Msg } from '../server/helpers.js';
import { CASA_TINY, ROOT, alive } from './helpers.js';

const tmp = tempDir('casa-worker-daemon-');
let daemon: ReturnType<typeof spawnCli> | undefined;
let port: number;
const truth = (JSON.parse(readFileSync(path.join(ROOT, 'examples', 'test-1.json'), 'utf8')) as { captions: string[] }).captions;

/** Worker processes started by the daemon. */
function workersOf(pid: number): number[] {
  return processesMentioning('tools.casa_worker')
    .filter((p) => {
      try {
        return Number(readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map((p) => p.pid);
}

beforeAll(async () => {
  await ensureBuilt();
  port = await freePort();
  const config = await writeConfig(tmp.dir, {
    listen: { host: '127.0.0.1', port },
    model: `torch:${CASA_TINY}`,
    defaults: { generation: { temperature: 0 }, restart: { policy: 'always', initialDelayMs: 200, maxDelayMs: 2000 } },
    streams: [
      { id: 'a', input: path.join(ROOT, 'examples', 'test-1.mp4') },
      { id: 'b', input: path.join(ROOT, 'examples', 'test-2.mp4') },
    ],
  });
  daemon = spawnCli(['serve', '--config', config], { timeoutMs: 600_000 });
  await until(async () => (await getJson(`http://127.0.0.1:${port}/readyz`).catch(() => ({ status: 0 }))).status === 200, 120_000, 'the daemon to be ready');
}, 240_000);

afterAll(async () => {
  daemon?.child.kill('SIGKILL');
  await daemon?.exited;
  tmp.cleanup();
});

const captions = (c: TestClient, s: string): Msg[] => c.of('caption', s);

describe('serve with a worker model', () => {
  it('two streams, one worker; the worker killed, a new one, both streams resume; nothing left after SIGTERM', async () => {
    const pid = daemon!.child.pid!;
    const c = await TestClient.connect(port);
    await c.subscribe(['a', 'b']);
    await c.waitFor((m) => m.filter((x) => x.type === 'caption' && x.stream === 'a').length >= 8 && m.some((x) => x.type === 'caption' && x.stream === 'b'), 120_000, 'captions on both streams');
    const first = workersOf(pid);
    expect(first).toHaveLength(1); // one worker serves both streams
    // the first pass over test-1 is the ONNX engine's greedy captioning of it (= its truth)
    const firstPass = captions(c, 'a').filter((m) => (m.frame as number) < 8);
    for (const m of firstPass.slice(0, 8)) expect(m.text).toBe(truth[m.frame as number]);

    process.kill(first[0]!, 'SIGKILL');
    await c.waitFor((m) => m.some((x) => x.type === 'status' && /model worker .*was killed by SIGKILL/.test(String(x.reason))), 60_000, 'the streams to report the dead worker');
    // Count only captions that follow the new worker's start: once (CI), captions numbered
    // after the kill came while no worker was running yet, so they proved no resume.
    await until(() => workersOf(pid).some((p) => p !== first[0]), 60_000, 'a new worker');
    const before = { a: c.lastSeq('a'), b: c.lastSeq('b') };
    await c.waitFor(
      (m) => ['a', 'b'].every((s) => m.some((x) => x.type === 'caption' && x.stream === s && (x.seq as number) > before[s as 'a' | 'b'])),
      120_000,
      'captions on both streams after the restart',
    );
    const second = workersOf(pid);
    expect(second).toHaveLength(1);
    expect(second[0]).not.toBe(first[0]);
    expect(alive(first[0])).toBe(false);
    await c.close();

    daemon!.child.kill('SIGTERM');
    const exit = await daemon!.exited;
    expect(exit.code).toBe(0);
    await until(() => !alive(second[0]), 10_000, 'the worker to stop with the daemon');
  }, 400_000);
});

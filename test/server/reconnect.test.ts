/// <reference lib="dom" />
// A live stream that goes away and comes back, end to end: `casa-live serve` on the embedded
// model, a real RTSP server (test/ingest/helpers/rtsp-relay.mjs, fed by an ffmpeg publisher)
// stopped for 15 s and started again, real WebSocket clients. Beside it, a stream whose
// server never answers, with a bounded restart policy, and one with an input of 4000
// characters (what its log lines quote is clipped).
//
// The recovery time is measured from the moment the RTSP server serves the stream again (the
// relay says "publishing /cam") to the first caption on the WebSocket; the test prints it.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtspServer } from '../ingest/helpers/rtsp-server.js';
import { REPO_ROOT, ffmpeg, spawnCli, tempDir } from '../cli/helpers.js';
import { TestClient, ensureBuilt, freePort, getJson, sleep, until, writeConfig, type Msg } from './helpers.js';

const OUTAGE_MS = 15_000;
/** The requirement: captions again within 5 s of the server being back. */
const RECOVERY_LIMIT_MS = 5000;

const tmp = tempDir('casa-reconnect-');
let port: number;
let daemon: ReturnType<typeof spawnCli> | undefined;

const statusesOf = (c: TestClient, stream: string): Msg[] => c.of('status', stream);
const metric = (text: string, name: string, stream: string): number => Number(new RegExp(`^${name}\\{stream="${stream}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);

let server: RtspServer;
let client: TestClient;
/** When each message reached the client. */
const arrivals = new Map<Msg, number>();

beforeAll(async () => {
  await ensureBuilt();
  const clip = path.join(tmp.dir, 'demo-live.mp4');
  // Short GOP: a player joining the stream decodes at once.
  await ffmpeg(['-i', path.join(REPO_ROOT, 'examples', 'demo.mp4'), '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '5', '-pix_fmt', 'yuv420p', clip]);
  server = new RtspServer(await freePort(), clip, '/cam');
  await server.start();
  port = await freePort();
  const closed = await freePort();
  const configPath = await writeConfig(tmp.dir, {
    listen: { host: '127.0.0.1', port },
    model: 'casa-tiny',
    log: { level: 'debug' },
    defaults: { restart: { initialDelayMs: 1000, maxDelayMs: 30_000 } }, // the daemon's defaults
    streams: [
      { id: 'cam', input: server.url },
      { id: 'refused', input: `rtsp://127.0.0.1:${closed}/x`, restart: { policy: 'on-failure', initialDelayMs: 200, maxDelayMs: 1000, maxRetries: 2 } },
      { id: 'long', input: `rtsp://127.0.0.1:${closed}/${'x'.repeat(4000)}` },
    ],
  });
  daemon = spawnCli(['serve', '--config', configPath]);
  await until(async () => (await getJson(`http://127.0.0.1:${port}/readyz`).catch(() => ({ status: 0 }))).status === 200, 60_000, 'the daemon to be ready');
  client = await TestClient.connect(port);
  client.ws.on('message', () => arrivals.set(client.messages.at(-1)!, Date.now()));
  await client.subscribe(['cam', 'refused', 'long'], { backfill: 10 });
}, 180_000);

afterAll(async () => {
  await client?.close();
  if (daemon && daemon.child.exitCode === null) daemon.child.kill('SIGKILL');
  await server?.stop();
  tmp.cleanup();
});

describe('one retry policy per stream, counted and reported', () => {
  it('honours a stream\'s restart block on a live input: delays within maxDelayMs, error after maxRetries, counted', async () => {
    await client.waitFor((m) => m.some((x) => x.stream === 'refused' && x.state === 'error'), 30_000, 'refused to give up');
    const states = statusesOf(client, 'refused').map((s) => s.state);
    expect(states.slice(-3)).toEqual(['reconnecting', 'reconnecting', 'error']);
    const retries = statusesOf(client, 'refused').filter((s) => s.state === 'reconnecting');
    for (const [i, s] of retries.entries()) {
      expect(s.reason).toMatch(new RegExp(`^Connection to .* was refused; .*[^.;]; retrying in [01]\\.\\d s \\(retry ${i + 1}\\)$`));
      expect(Number(/retrying in (\S+) s/.exec(String(s.reason))![1])).toBeLessThanOrEqual(1.0);
      expect(String(s.reason)).not.toMatch(/\.;|;\s*;/);
    }
    expect(statusesOf(client, 'refused').at(-1)!.reason).toMatch(/; gave up after 3 failed attempts\.$/);
    const ready = await getJson(`http://127.0.0.1:${port}/readyz`);
    const refused = ready.body.streams.find((s: { id: string }) => s.id === 'refused');
    expect(refused).toMatchObject({ state: 'error', restarts: 2, lastRestartReason: retries.at(-1)!.reason });
    const metrics = (await getJson(`http://127.0.0.1:${port}/metrics`)).body as string;
    expect(metric(metrics, 'casa_live_stream_reconnects_total', 'refused')).toBe(2);
  });

  it(`captions a live stream again within ${RECOVERY_LIMIT_MS / 1000} s of its RTSP server coming back after ${OUTAGE_MS / 1000} s away`, async () => {
    await client.waitFor((m) => m.filter((x) => x.type === 'caption' && x.stream === 'cam').length >= 3, 90_000, 'captions from cam');
    const before = client.messages.length;
    const downAt = Date.now();
    await server.stop();
    await sleep(OUTAGE_MS);
    await server.start();
    const { listeningAt, servingAt } = server;
    await client.waitFor((m) => m.slice(before).some((x) => x.type === 'caption' && x.stream === 'cam' && arrivals.get(x)! > servingAt), 30_000, 'a caption after the outage');

    const after = client.messages.slice(before).filter((x) => x.stream === 'cam');
    const firstCaption = after.find((x) => x.type === 'caption' && arrivals.get(x)! > servingAt)!;
    const recoveryMs = arrivals.get(firstCaption)! - servingAt;
    console.info(
      `[reconnect] outage ${((listeningAt - downAt) / 1000).toFixed(1)} s; first caption ${(recoveryMs / 1000).toFixed(2)} s after the stream was served again ` +
        `(${((arrivals.get(firstCaption)! - listeningAt) / 1000).toFixed(2)} s after the server listened)`,
    );
    expect(recoveryMs).toBeLessThanOrEqual(RECOVERY_LIMIT_MS);

    // reconnecting → live only once frames flow from the new connection: no live while the
    // server was down, and the live comes before the first new caption.
    const statuses = after.filter((x) => x.type === 'status');
    expect(statuses[0]!.state).toBe('reconnecting');
    expect(statuses.map((s) => s.state)).not.toContain('error');
    const lives = statuses.filter((s) => s.state === 'live');
    expect(lives.length).toBeGreaterThanOrEqual(1);
    for (const s of lives) expect(arrivals.get(s)!).toBeGreaterThan(servingAt);
    expect(lives[0]!.seq as number).toBeLessThan(firstCaption.seq as number);
    const reconnects = statuses.filter((s) => s.state === 'reconnecting');
    expect(reconnects.length).toBeGreaterThanOrEqual(2);
    for (const s of reconnects) {
      expect(String(s.reason)).toMatch(/[^.;]; retrying in \d+\.\d s \(retry \d+\)$/);
      expect(String(s.reason)).not.toMatch(/\.;|;\s*;/);
    }

    // Every reconnect counted: the metric and /readyz agree with the statuses sent.
    const all = statusesOf(client, 'cam').filter((s) => s.state === 'reconnecting').length;
    const metrics = (await getJson(`http://127.0.0.1:${port}/metrics`)).body as string;
    expect(metric(metrics, 'casa_live_stream_reconnects_total', 'cam')).toBe(all);
    expect(metric(metrics, 'casa_live_stream_startup_seconds_count', 'cam')).toBeGreaterThanOrEqual(2);
    const cam = (await getJson(`http://127.0.0.1:${port}/readyz`)).body.streams.find((s: { id: string }) => s.id === 'cam');
    expect(cam).toMatchObject({ state: 'live', restarts: all, lastRestartReason: reconnects.at(-1)!.reason });
  }, 120_000);

  it('keeps every log line short and /readyz small, whatever the length of an input', async () => {
    await client.waitFor((m) => m.filter((x) => x.stream === 'long' && x.state === 'reconnecting').length >= 2, 20_000, 'long to retry');
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.text());
    expect(ready.length).toBeLessThan(16_384);
    const lines = daemon!.stdout().split('\n').filter(Boolean);
    expect(lines.some((l) => l.includes('"stream":"long"'))).toBe(true);
    const longest = Math.max(...lines.map((l) => l.length));
    expect(longest).toBeLessThan(8192);
    for (const s of statusesOf(client, 'long')) expect(String(s.reason ?? '').length).toBeLessThan(600);
  });
});

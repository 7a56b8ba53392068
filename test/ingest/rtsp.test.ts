/**
 * RTSP against real servers started by the test: a TCP relay (helpers/rtsp-relay.mjs) fed by an
 * ffmpeg publisher, and rtsp-streaming-server (UDP). Server killed and restarted, server wedged
 * (SIGSTOP), slow consumer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SourceOptions } from '../../src/ingest/index.js';
import { freePort, Helpers, makeClip, sleep, tempDir, waitFor, x264Args } from './helpers/media.js';
import { strayChildren } from './helpers/procs.js';
import { consume, increasing, OpenedSources } from './helpers/sources.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const tmp = tempDir();
const helpers = new Helpers();
let clip: string;

beforeAll(async () => {
  clip = join(tmp.dir, 'live.mp4');
  // Short GOP so that a player joining mid-stream decodes within 0.4 s.
  await makeClip(clip, { size: '320x240', rate: 25, seconds: 4, codecArgs: x264Args(10) });
});
const sources = new OpenedSources();
const open = (opts: SourceOptions) => sources.open(opts);
afterEach(async () => {
  await sources.stopAll();
  await helpers.killAll();
});
afterAll(() => tmp.cleanup());

/** Starts a node helper script and resolves when it prints `ready` on stdout. */
async function startNodeHelper(script: string, args: string[], ready: string): Promise<ChildProcess> {
  const p = spawn(process.execPath, [join(here, 'helpers', script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  helpers.procs.add(p);
  if (p.pid) helpers.pids.add(p.pid);
  p.once('exit', () => helpers.procs.delete(p));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${script} did not start`)), 10_000);
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(ready)) {
        clearTimeout(t);
        resolve();
      }
    });
    p.once('exit', () => reject(new Error(`${script} exited`)));
  });
  return p;
}

function startRelay(port: number): Promise<ChildProcess> {
  return startNodeHelper('rtsp-relay.mjs', [String(port)], 'listening');
}

function startPublisher(url: string, transport: 'tcp' | 'udp' = 'tcp'): ChildProcess {
  return helpers.ffmpeg(['-re', '-stream_loop', '-1', '-i', clip, '-an', '-c', 'copy', '-f', 'rtsp', '-rtsp_transport', transport, url]);
}

describe('RTSP over TCP (default transport)', () => {
  it('delivers frames with stream timestamps, and a slow consumer drops to the newest frame', async () => {
    const port = await freePort();
    await startRelay(port);
    startPublisher(`rtsp://127.0.0.1:${port}/live`);
    const source = open({ input: `rtsp://127.0.0.1:${port}/live`, width: 64, height: 48, fps: 5, reconnect: { initialDelayMs: 100, maxDelayMs: 400 } });
    expect(source.kind).toBe('live');
    // The publisher may not have announced yet: the first attempts can meet 404, then retry.
    const { frames, statuses } = consume(source, 0);
    await waitFor(() => frames.length >= 5, 15_000, '5 frames');
    expect(increasing(frames)).toBe(true);
    const gaps = frames.slice(1).map((f, i) => f.ptsSeconds - frames[i]!.ptsSeconds);
    for (const g of gaps) expect(g).toBeGreaterThan(0.1);
    expect(statuses.map((s) => s.state)).toContain('live');
    expect(frames[0]!.rgb.length).toBe(64 * 48 * 3);
    await source.stop();
    expect(statuses.at(-1)!.state).toBe('ended');
    expect(strayChildren(helpers.pids)).toEqual([]);

    // Slow consumer: 700 ms per frame at 5 fps → most frames dropped, none queued.
    const slow = open({ input: `rtsp://127.0.0.1:${port}/live`, width: 64, height: 48, fps: 5 });
    const got = consume(slow, 700);
    await waitFor(() => got.frames.length >= 4, 15_000, '4 slow frames');
    await slow.stop();
    expect(slow.droppedFrames).toBeGreaterThanOrEqual(4);
    // Each frame taken is the newest one: consecutive pts are ~0.7 s apart, not 0.2 s.
    const slowGaps = got.frames.slice(2).map((f, i) => f.ptsSeconds - got.frames[i + 1]!.ptsSeconds);
    for (const g of slowGaps) expect(g).toBeGreaterThan(0.35);
    expect(strayChildren(helpers.pids)).toEqual([]);
  });

  it('reconnects after the server is killed and restarted; frames resume with increasing pts', async () => {
    const port = await freePort();
    let relay = await startRelay(port);
    let publisher = startPublisher(`rtsp://127.0.0.1:${port}/live`);
    const source = open({
      input: `rtsp://127.0.0.1:${port}/live`,
      width: 64,
      height: 48,
      fps: 5,
      reconnect: { initialDelayMs: 200, maxDelayMs: 800 },
    });
    const { frames, statuses } = consume(source);
    await waitFor(() => frames.length >= 4, 15_000, 'first frames');

    const mark = statuses.length;
    await helpers.kill(relay);
    await helpers.kill(publisher);
    await waitFor(() => statuses.slice(mark).some((s) => s.state === 'reconnecting'), 10_000, 'reconnecting');
    const before = frames.length;
    // Down for a while: the retries meet "connection refused", found by a TCP connect alone
    // (no ffmpeg is started for them).
    const childrenSeen = new Set<number>();
    const downUntil = Date.now() + 1200;
    while (Date.now() < downUntil) {
      for (const pid of strayChildren(helpers.pids)) childrenSeen.add(pid);
      await sleep(20);
    }
    const backAt = Date.now();
    relay = await startRelay(port);
    publisher = startPublisher(`rtsp://127.0.0.1:${port}/live`);
    await waitFor(() => frames.length >= before + 4, 20_000, 'frames after restart');

    const states = statuses.map((s) => s.state);
    expect(states[0]).toBe('connecting');
    expect(states.slice(0, mark)).toContain('live');
    const after = states.slice(mark);
    expect(after[0]).toBe('reconnecting');
    // ffmpeg exits 0 when the RTSP server goes away: a drop, not an end.
    expect(statuses[mark]!.code).toBe('stream-dropped');
    expect(after.at(-1)).toBe('live');
    // The input was up: the first retry comes at once (the fast path), the next ones within 1 s.
    const retries = statuses.slice(mark).filter((s) => s.state === 'reconnecting');
    expect(retries[0]!.retryInMs).toBeLessThanOrEqual(200);
    for (const r of retries) expect(r.retryInMs).toBeLessThanOrEqual(800);
    expect(retries.length).toBeGreaterThanOrEqual(3);
    expect(childrenSeen.size, 'ffmpeg children started while the server refused connections').toBe(0);
    // live again only once frames flow from the new connection: never while the server was down.
    const lives = statuses.slice(mark).filter((s) => s.state === 'live');
    expect(lives).toHaveLength(1);
    expect(lives[0]!.at).toBeGreaterThan(backAt);
    expect(lives[0]!.startupMs).toBeGreaterThan(0);
    expect(source.reconnects).toBeGreaterThanOrEqual(1);
    const reasons = statuses.filter((s) => s.state === 'reconnecting').map((s) => s.code);
    expect(reasons.every((c) => typeof c === 'string')).toBe(true);
    expect(increasing(frames)).toBe(true);
    // The gap in pts covers the outage (at least the 600 ms the server was down).
    const jump = frames[before]!.ptsSeconds - frames[before - 1]!.ptsSeconds;
    expect(jump).toBeGreaterThan(0.6);
    expect(frames.map((f) => f.index)).toEqual(frames.map((_, i) => i));
    await source.stop();
    expect(strayChildren(helpers.pids)).toEqual([]);
  });

  it('declares a wedged server (SIGSTOP) stalled within the stall timeout, kills ffmpeg, and comes back after SIGCONT', async () => {
    const port = await freePort();
    const relay = await startRelay(port);
    startPublisher(`rtsp://127.0.0.1:${port}/live`);
    const stallTimeoutMs = 2000;
    const source = open({
      input: `rtsp://127.0.0.1:${port}/live`,
      width: 64,
      height: 48,
      fps: 5,
      stallTimeoutMs,
      ioTimeoutMs: 60_000, // ffmpeg's own timeout must not be what ends it
      reconnect: { initialDelayMs: 100, maxDelayMs: 300 },
    });
    const { frames, statuses } = consume(source);
    await waitFor(() => frames.length >= 3, 15_000, 'first frames');

    relay.kill('SIGSTOP');
    const stoppedAt = Date.now();
    const since = statuses.length;
    await waitFor(() => statuses.slice(since).some((s) => s.state === 'reconnecting'), stallTimeoutMs + 3000, 'stall detection');
    const stall = statuses.slice(since).find((s) => s.state === 'reconnecting')!;
    const elapsed = stall.at - stoppedAt;
    expect(stall.code).toBe('stalled');
    expect(stall.reason).toMatch(/stalled/);
    expect(elapsed).toBeLessThanOrEqual(stallTimeoutMs + 1000);
    expect(elapsed).toBeGreaterThanOrEqual(stallTimeoutMs - 500);
    // The wedged ffmpeg was SIGKILLed: only the next attempt's ffmpeg (if any) is a child now.
    expect(strayChildren(helpers.pids).length).toBeLessThanOrEqual(1);

    relay.kill('SIGCONT');
    const n = frames.length;
    await waitFor(() => frames.length >= n + 3, 20_000, 'frames after SIGCONT');
    expect(statuses.at(-1)!.state).toBe('live');
    expect(increasing(frames)).toBe(true);
    await source.stop();
    expect(strayChildren(helpers.pids)).toEqual([]);
  });
});

describe('connect timeout', () => {
  it('a server that accepts but never answers fails the attempt after connectTimeoutMs (connect-timeout), not the shorter stall timeout', async () => {
    const silent = createServer((sock) => sock.on('error', () => {}));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as AddressInfo).port;
      const source = open({
        input: `rtsp://127.0.0.1:${port}/x`,
        width: 32,
        height: 32,
        fps: 5,
        stallTimeoutMs: 1000, // in force only once a frame came (1.4 s at 5 fps)
        connectTimeoutMs: 3000,
        ioTimeoutMs: 60_000, // ffmpeg's own timeout must not be what ends it
        reconnect: { maxRetries: 0 },
      });
      const t0 = Date.now();
      const { statuses, done } = consume(source);
      await done.catch(() => undefined);
      const elapsed = Date.now() - t0;
      expect(statuses.at(-1)).toMatchObject({ state: 'error', code: 'connect-timeout' });
      expect(statuses.at(-1)!.reason).toMatch(/^No frame came from rtsp:\/\/127\.0\.0\.1:\d+\/x within 3 s of starting ffmpeg; /);
      expect(elapsed).toBeGreaterThanOrEqual(2500);
      expect(strayChildren(helpers.pids)).toEqual([]);
    } finally {
      silent.close();
    }
  });
});

describe('RTSP over UDP (rtsp-streaming-server)', () => {
  it('delivers frames with rtspTransport: udp', async () => {
    const publishPort = await freePort();
    const clientPort = await freePort();
    const rtpStart = 20000 + 2 * Math.floor(Math.random() * 10000);
    await startNodeHelper('rtsp-udp-server.mjs', [String(publishPort), String(clientPort), String(rtpStart)], 'listening');
    startPublisher(`rtsp://127.0.0.1:${publishPort}/cam`, 'udp');
    const source = open({
      input: `rtsp://127.0.0.1:${clientPort}/cam`,
      width: 64,
      height: 48,
      fps: 5,
      rtspTransport: 'udp',
      reconnect: { initialDelayMs: 200, maxDelayMs: 500 },
    });
    const { frames } = consume(source);
    await waitFor(() => frames.length >= 5, 20_000, 'frames over UDP');
    expect(increasing(frames)).toBe(true);
    await source.stop();
    expect(strayChildren(helpers.pids)).toEqual([]);
  });
});


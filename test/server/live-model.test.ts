/// <reference lib="dom" />
// `casa-live serve` as users run it: the real CLI, the embedded casa-tiny model, a live RTSP
// stream (ffmpeg publishing examples/demo.mp4 in a loop to a real RTSP server,
// test/ingest/helpers/rtsp-relay.mjs), a bad stream beside it, real WebSocket clients and the
// overlay page in headless Chromium. No stand-in pipeline here: every caption is the model's.
//
// One daemon life story, in order: subscribe → 200 clients → disconnect/resume → SIGKILL and
// restart (clients and the overlay resume from the durable log) → SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, ffmpeg, processesMentioning, spawnCli, tempDir } from '../cli/helpers.js';
import { TOKEN, TestClient, ensureBuilt, launchChromium, freePort, getJson, seqsOf, sleep, until, writeConfig, type Msg } from './helpers.js';

const FFMPEG = process.env.FFMPEG_PATH || 'ffmpeg';
const RELAY = path.join(REPO_ROOT, 'test', 'ingest', 'helpers', 'rtsp-relay.mjs');
/** Every word the world's commentary uses (tools/casa_model/world.py). */
const WORLD_WORDS =
  /^(a|another|it|the|small|big|red|green|blue|yellow|white|circle|square|triangle|enters|from|left|right|top|bottom|moves|turns|stops|up|down|again|grows|shrinks|meets|leaves)$/;

const tmp = tempDir('casa-live-model-');
const helpers: ChildProcess[] = [];
let browser: Browser;
let clip: string;
let rtspPort: number;
let port: number;
let configPath: string;
let daemon: ReturnType<typeof spawnCli> | undefined;

function startHelper(cmd: string, args: string[]): ChildProcess {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  helpers.push(p);
  return p;
}

async function startDaemon(): Promise<ReturnType<typeof spawnCli>> {
  const run = spawnCli(['serve', '--config', configPath]);
  await until(async () => (await getJson(`http://127.0.0.1:${port}/readyz`).catch(() => ({ status: 0 }))).status === 200, 30_000, 'the daemon to be ready');
  return run;
}

function captionsOf(c: TestClient, stream = 'cam'): Msg[] {
  return c.of('caption', stream);
}

/** Seqs of the captions in the stream's durable log. */
function loggedSeqs(stream: string): number[] {
  const dir = path.join(tmp.dir, 'data', 'captions', stream);
  const seqs: number[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.jsonl')).sort()) {
    for (const line of readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      const ev = line ? (JSON.parse(line) as { type: string; seq: number }) : undefined;
      if (ev?.type === 'caption') seqs.push(ev.seq);
    }
  }
  return seqs;
}


beforeAll(async () => {
  await ensureBuilt();
  // The demo clip with a short GOP, so that a player joining the live stream decodes at once.
  clip = path.join(tmp.dir, 'demo-live.mp4');
  await ffmpeg(['-i', path.join(REPO_ROOT, 'examples', 'demo.mp4'), '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '5', '-pix_fmt', 'yuv420p', clip]);
  rtspPort = await freePort();
  const relay = startHelper(process.execPath, [RELAY, String(rtspPort)]);
  await new Promise<void>((resolve, reject) => {
    relay.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
    relay.once('exit', () => reject(new Error('the RTSP relay exited')));
  });
  startHelper(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-re', '-stream_loop', '-1', '-i', clip, '-an', '-c', 'copy', '-f', 'rtsp', '-rtsp_transport', 'tcp', `rtsp://127.0.0.1:${rtspPort}/cam`]);
  port = await freePort();
  const closedPort = await freePort();
  configPath = await writeConfig(tmp.dir, {
    listen: { host: '127.0.0.1', port },
    model: 'casa-tiny',
    captionLog: { fsync: true },
    limits: { resumeWindow: 2000 },
    streams: [
      { id: 'cam', input: `rtsp://127.0.0.1:${rtspPort}/cam` }, // TCP, the default transport
      { id: 'broken', input: `rtsp://127.0.0.1:${closedPort}/nothing` },
    ],
  });
  daemon = await startDaemon();
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  if (daemon && daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill('SIGKILL');
  for (const p of helpers) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  tmp.cleanup();
});

describe('casa-live serve on the embedded model and a live RTSP stream', () => {
  let first: TestClient;

  it('streams hello, status, token and caption events; the bad stream beside it does not disturb it', async () => {
    first = await TestClient.connect(port);
    await first.waitFor((m) => m.length > 0, 5000, 'hello');
    expect(first.messages[0]).toMatchObject({ type: 'hello', model: 'casa-tiny', fps: 2, streams: ['cam', 'broken'] });
    await first.subscribe(['cam', 'broken']);
    await first.waitFor((m) => m.filter((x) => x.type === 'caption' && x.stream === 'cam' && x.text !== '').length >= 6, 60_000, 'spoken captions from cam');

    const captions = captionsOf(first);
    const frames = captions.map((c) => c.frame as number);
    // ffmpeg hands over the frames it buffered while probing the stream in one burst; the
    // newest-wins queue skips the stale ones, then no frame is dropped.
    for (let i = 3; i < frames.length; i++) expect(frames[i]).toBe(frames[i - 1]! + 1);
    for (const c of captions) {
      expect(c.end as number).toBeCloseTo((c.start as number) + 0.5, 3);
      expect(c.latencyMs as number).toBeLessThan(500);
      for (const w of String(c.text).split(/\s+/).filter(Boolean)) expect(w).toMatch(WORLD_WORDS);
    }
    // Each spoken caption is the concatenation of its frame's token events.
    const spoken = captions.filter((c) => c.text !== '' && (c.frame as number) > frames[0]!);
    expect(spoken.length).toBeGreaterThan(0);
    for (const c of spoken) {
      const pieces = first.of('token', 'cam').filter((t) => t.frame === c.frame).map((t) => t.text).join('');
      expect(pieces.trim()).toBe(String(c.text));
    }
    expect(first.of('status', 'cam').map((s) => s.state)).toContain('live');
    // The bad stream reports its own trouble and is retried; cam never noticed.
    const brokenStates = first.of('status', 'broken').map((s) => s.state);
    expect(brokenStates.some((s) => s === 'reconnecting' || s === 'error')).toBe(true);
    expect(first.of('status', 'cam').filter((s) => s.state !== 'live' && s.state !== 'connecting')).toEqual([]);
    const ready = await getJson(`http://127.0.0.1:${port}/readyz`);
    expect(ready.body.model).toMatchObject({ state: 'loaded', name: 'casa-tiny' });
  }, 90_000);

  it('200 concurrent clients receive every caption', async () => {
    const clients = await Promise.all(Array.from({ length: 200 }, () => TestClient.connect(port)));
    try {
      await Promise.all(clients.map((c) => c.subscribe(['cam'])));
      const from = first.lastSeq('cam');
      await first.waitFor((m) => seqsOf(m, 'cam', 'caption').filter((s) => s > from).length >= 6, 30_000, 'six more captions');
      const to = first.lastSeq('cam');
      const expected = seqsOf(first.messages, 'cam', 'caption').filter((s) => s > from && s <= to);
      await until(() => clients.every((c) => c.lastSeq('cam') >= to), 10_000, 'every client to catch up');
      for (const c of clients) expect(seqsOf(c.messages, 'cam', 'caption').filter((s) => s > from && s <= to)).toEqual(expected);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  }, 60_000);

  it('a client that disconnects resumes from its seq with no gap and no duplicate', async () => {
    const c = await TestClient.connect(port);
    await c.subscribe(['cam']);
    await c.waitFor((m) => seqsOf(m, 'cam', 'caption').length >= 2, 20_000, 'captions');
    await c.close();
    const last = c.lastSeq('cam');
    await sleep(2500); // ~5 frames go by while it is away
    const back = await TestClient.connect(port);
    await back.subscribe(['cam'], { resume: { cam: last } });
    await back.waitFor((m) => seqsOf(m, 'cam', 'caption').length >= 8, 20_000, 'replay and live captions');
    const got = [...seqsOf(c.messages, 'cam', 'caption'), ...seqsOf(back.messages, 'cam', 'caption')];
    expect(new Set(got).size).toBe(got.length);
    const all = loggedSeqs('cam');
    expect(got).toEqual(all.filter((s) => s >= got[0]! && s <= got[got.length - 1]!));
    await back.close();
  }, 60_000);

  it('SIGKILL and restart: clients and the overlay page resume from the durable log', async () => {
    const page: Page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/overlay/cam?token=${TOKEN}&lines=4&partial=0`);
    await page.waitForFunction(() => document.querySelectorAll('#box .line').length >= 2, undefined, { timeout: 20_000 });
    const steady = await TestClient.connect(port);
    await steady.subscribe(['cam']);
    await steady.waitFor((m) => seqsOf(m, 'cam', 'caption').length >= 3, 20_000, 'captions');
    await first.close();

    daemon!.child.kill('SIGKILL');
    await daemon!.exited;
    expect((await steady.closed).code).toBe(1006);
    await page.waitForFunction(() => document.body.getAttribute('data-state') === 'reconnecting', undefined, { timeout: 10_000 });
    const shownBefore = await page.$$eval('#box .line', (els) => els.map((e) => Number(e.getAttribute('data-seq'))));
    // The killed daemon's ffmpeg notices its reader is gone and exits by itself.
    await until(() => processesMentioning(`127.0.0.1:${rtspPort}/cam`).every((p) => p.cmd.includes('-re')), 10_000, 'the orphaned ffmpeg to exit');

    daemon = await startDaemon();
    const back = await TestClient.connect(port);
    await back.subscribe(['cam'], { resume: { cam: steady.lastSeq('cam') } });
    const restartedAt = loggedSeqs('cam').length;
    await back.waitFor((m) => seqsOf(m, 'cam', 'caption').length >= 4, 30_000, 'captions after the restart');
    const got = [...seqsOf(steady.messages, 'cam', 'caption'), ...seqsOf(back.messages, 'cam', 'caption')];
    expect(new Set(got).size).toBe(got.length);
    expect(got).toEqual(loggedSeqs('cam').filter((s) => s >= got[0]! && s <= got[got.length - 1]!));
    expect(loggedSeqs('cam').length).toBeGreaterThanOrEqual(restartedAt);

    // The overlay reconnected by itself and shows newer captions, none twice.
    await page.waitForFunction(
      (max) => document.body.getAttribute('data-state') === 'live' && Array.from(document.querySelectorAll('#box .line')).some((e) => Number(e.getAttribute('data-seq')) > max),
      Math.max(...shownBefore),
      { timeout: 30_000 },
    );
    const shown = await page.$$eval('#box .line', (els) => els.map((e) => ({ seq: Number(e.getAttribute('data-seq')), text: e.textContent ?? '' })));
    for (let i = 1; i < shown.length; i++) expect(shown[i]!.seq).toBeGreaterThan(shown[i - 1]!.seq);
    for (const line of shown) for (const w of line.text.split(/\s+/).filter(Boolean)) expect(w.toLowerCase()).toMatch(WORLD_WORDS);
    await page.close();
    first = back;
  }, 120_000);

  it('SIGTERM: exit 0 within 10 s, every broadcast caption in the log, no ffmpeg left', async () => {
    const closed = first.closed;
    const t0 = Date.now();
    daemon!.child.kill('SIGTERM');
    const r = await daemon!.exited;
    expect(r.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect((await closed).code).toBe(1001);
    const logged = new Set(loggedSeqs('cam'));
    for (const s of seqsOf(first.messages, 'cam', 'caption')) expect(logged.has(s)).toBe(true);
    // only the test's own publisher is left
    expect(processesMentioning(`127.0.0.1:${rtspPort}/cam`).filter((p) => !p.cmd.includes('-re'))).toEqual([]);
    expect(processesMentioning('/nothing')).toEqual([]);
  }, 30_000);
});

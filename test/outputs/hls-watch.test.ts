/// <reference lib="dom" />
// The watch page, the HLS output and its WebVTT rendition, as users run them: `casa-live serve`
// (real CLI, embedded casa-tiny model) on a live MPEG-TS stream over UDP (ffmpeg playing
// examples/demo.mp4 in a loop), `hls.enabled` on, Debian's Chromium driven by playwright-core,
// Debian's ffprobe and ffmpeg reading the HLS the daemon wrote.
//
// Screenshots for the README: CASA_LIVE_SCREENSHOTS=1 writes them to docs/images/.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, ffmpeg, spawnCli, tempDir } from '../cli/helpers.js';
import { TOKEN, TestClient, ensureBuilt, freePort, getJson, launchChromium, sleep, until, writeConfig } from '../server/helpers.js';

const run = promisify(execFile);
const FFMPEG = process.env.FFMPEG_PATH || 'ffmpeg';
const FFPROBE = process.env.FFPROBE_PATH || 'ffprobe';
const SHOTS = process.env.CASA_LIVE_SCREENSHOTS === '1' ? path.join(REPO_ROOT, 'docs', 'images') : undefined;
const SEGMENT = 1;

const tmp = tempDir('casa-hls-');
const helpers: ChildProcess[] = [];
let browser: Browser;
let port: number;
let daemon: ReturnType<typeof spawnCli> | undefined;
let client: TestClient;
/** When the test's own WebSocket client received each caption (by seq). */
const wsAt = new Map<number, number>();
const hlsDirOf = (): string => path.join(tmp.dir, 'data', 'hls', 'cam');

beforeAll(async () => {
  await ensureBuilt();
  // The demo clip with a short GOP, sent as a live MPEG-TS stream over UDP.
  const clip = path.join(tmp.dir, 'demo-live.ts');
  await ffmpeg(['-i', path.join(REPO_ROOT, 'examples', 'demo.mp4'), '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '5', '-pix_fmt', 'yuv420p', clip]);
  const udp = await freePort();
  port = await freePort();
  await writeConfig(tmp.dir, {
    listen: { host: '127.0.0.1', port },
    model: 'casa-tiny',
    streams: [{ id: 'cam', input: `udp://127.0.0.1:${udp}`, hls: { enabled: true, segmentSeconds: SEGMENT, listSize: 8 } }],
  });
  daemon = spawnCli(['serve', '--config', path.join(tmp.dir, 'casa-live.yaml')], { timeoutMs: 900_000 });
  await until(async () => (await getJson(`http://127.0.0.1:${port}/readyz`).catch(() => ({ status: 0 }))).status === 200, 60_000, 'the daemon to be ready');
  const sender = spawn(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-re', '-stream_loop', '-1', '-i', clip, '-an', '-c', 'copy', '-f', 'mpegts', `udp://127.0.0.1:${udp}?pkt_size=1316`], { stdio: 'ignore' });
  helpers.push(sender);
  client = await TestClient.connect(port);
  client.ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { type: string; seq?: number };
    if (m.type === 'caption' && m.seq !== undefined) wsAt.set(m.seq, Date.now());
  });
  await client.subscribe(['cam']);
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await client?.close();
  if (daemon && daemon.child.exitCode === null && daemon.child.signalCode === null) {
    // SIGTERM first: a SIGKILLed daemon cannot reap its ffmpeg, which blocks reading UDP for ever.
    daemon.child.kill('SIGTERM');
    await Promise.race([daemon.exited, sleep(10_000)]);
    if (daemon.child.exitCode === null) daemon.child.kill('SIGKILL');
  }
  for (const p of helpers) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  tmp.cleanup();
});

/** A page that records what it loads from where, and its console errors. */
async function open(url: string): Promise<{ page: Page; requests: string[]; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => m.type() === 'error' && errors.push(`${m.text()} (${m.location().url})`));
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  return { page, requests, errors };
}

const spoken = (): Array<{ seq: number; text: string; start: number }> =>
  client.of('caption', 'cam').filter((c) => String(c.text).trim() !== '').map((c) => ({ seq: c.seq as number, text: String(c.text), start: c.start as number }));

/** The video element plays: its currentTime advances. */
async function expectVideoPlays(page: Page): Promise<void> {
  await page.waitForFunction(() => (document.getElementById('video') as HTMLVideoElement).currentTime > 0.5, undefined, { timeout: 60_000 });
  const t1 = await page.evaluate(() => (document.getElementById('video') as HTMLVideoElement).currentTime);
  await sleep(2500);
  const t2 = await page.evaluate(() => (document.getElementById('video') as HTMLVideoElement).currentTime);
  expect(t2 - t1).toBeGreaterThan(1);
}

/** Each spoken caption is on the page within 2 s of the test's own client getting it; the newest words are highlighted. */
async function expectCaptionsWithin2s(page: Page): Promise<void> {
  const from = client.lastSeq('cam');
  await client.waitFor(() => spoken().filter((c) => c.seq > from).length >= 4, 60_000, 'four spoken captions');
  await sleep(2000);
  // The captions the test's client got at least 2 s ago (more may arrive while the page is read).
  const cutoff = Date.now() - 2000;
  const recent = spoken().filter((c) => c.seq > from && wsAt.get(c.seq)! <= cutoff);
  expect(recent.length).toBeGreaterThanOrEqual(4);
  const shown = await page.evaluate(() => (window as unknown as { casaWatch: { shown: Array<{ seq: number; at: number; lines: string[] }> } }).casaWatch.shown);
  for (const c of recent) {
    const s = shown.find((x) => x.seq === c.seq);
    expect(s, `caption ${c.seq} shown (the page has ${shown.map((x) => x.seq).join(',')})`).toBeDefined();
    expect(s!.at - wsAt.get(c.seq)!).toBeLessThan(2000);
    // The caption's words are on the two lines shown (the newest words end the last line).
    expect(s!.lines.length).toBeLessThanOrEqual(2);
    expect(s!.lines.join(' ')).toContain(c.text.trim().split(' ').at(-1)!);
  }
  const box = await page.$$eval('#box .line', (lines) => lines.map((l) => ({ text: l.textContent, fresh: l.querySelectorAll('.fresh').length })));
  expect(box.length).toBeGreaterThan(0);
  expect(box.length).toBeLessThanOrEqual(2);
  expect(box.at(-1)!.fresh).toBeGreaterThan(0);
}

/** The lag plot has points, and pixels. */
async function expectPlotDrawn(page: Page): Promise<void> {
  const plot = await page.evaluate(() => {
    const c = document.getElementById('plot') as HTMLCanvasElement;
    const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let painted = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i]! > 0) painted++;
    return { points: Number(c.getAttribute('data-points')), painted };
  });
  expect(plot.points).toBeGreaterThanOrEqual(4);
  expect(plot.painted).toBeGreaterThan(500);
}

describe('watch page', () => {
  it('plays the video, draws the captions over it within 2 s of their WebSocket event, plots the lag', async () => {
    // The page is opened once the stream's HLS is there (before, it would show "no video" and retry).
    await until(async () => existsSync(path.join(hlsDirOf(), 'master.m3u8')), 60_000, 'the master playlist');
    const { page, requests, errors } = await open(`http://127.0.0.1:${port}/watch/cam?token=${TOKEN}`);
    await expectVideoPlays(page);
    await expectCaptionsWithin2s(page);
    await expectPlotDrawn(page);
    expect(await page.getAttribute('body', 'data-state')).toBe('live');
    // The WebVTT rendition is loaded but not shown: the feed's captions are drawn instead.
    expect(await page.evaluate(() => Array.from((document.getElementById('video') as HTMLVideoElement).textTracks).filter((t) => t.mode === 'showing').length)).toBe(0);
    // Offline: everything came from the daemon (hls.js included).
    expect(requests.every((u) => u.startsWith(`http://127.0.0.1:${port}/`) || u.startsWith(`ws://127.0.0.1:${port}/`))).toBe(true);
    expect(requests.some((u) => u.includes('/assets/hls.min.js'))).toBe(true);
    expect(errors).toEqual([]);
    await page.screenshot({ path: path.join(SHOTS ?? tmp.dir, 'watch-page.png') });
    await page.close();
  }, 150_000);

  it('hls.js lists the WebVTT subtitle rendition and shows its cues', async () => {
    const { page, errors } = await open(`http://127.0.0.1:${port}/watch/cam?token=${TOKEN}&captions=hls`);
    // Read in the same evaluation that finds it: hls.js empties its track list while it reloads the
    // master playlist (after a network error), so a second evaluation could find none.
    const listed = await page.waitForFunction(
      () => {
        const t = (window as unknown as { casaWatch: { hls?: { subtitleTracks: Array<{ name: string; lang: string }> } } }).casaWatch.hls?.subtitleTracks[0];
        return t ? { name: t.name, lang: t.lang } : false;
      },
      undefined,
      { timeout: 30_000 },
    );
    const track = await listed.jsonValue();
    expect(track).toEqual({ name: 'Captions', lang: 'en' });
    // A cue is showing over the video (rendered natively by Chromium from the text track).
    const handle = await page.waitForFunction(
      () => {
        const tracks = Array.from((document.getElementById('video') as HTMLVideoElement).textTracks);
        const showing = tracks.find((t) => t.mode === 'showing');
        const cue = showing?.activeCues?.[0] as VTTCue | undefined;
        return cue && cue.text.trim() !== '' ? cue.text : false;
      },
      undefined,
      { timeout: 60_000, polling: 200 },
    );
    const cueText = String(await handle.jsonValue()).replace(/\n/g, ' ');
    const words = new Set(client.of('caption', 'cam').flatMap((c) => String(c.text).split(/\s+/)));
    for (const w of cueText.split(/[\s,.]+/).filter(Boolean)) expect(words.has(w), `cue word "${w}" was captioned`).toBe(true);
    expect(errors).toEqual([]);
    await page.screenshot({ path: path.join(SHOTS ?? tmp.dir, 'watch-page-hls-captions.png') });
    await page.close();
  }, 120_000);

  it('the index page lists the stream with links to watch and overlay it', async () => {
    const { page } = await open(`http://127.0.0.1:${port}/?token=${TOKEN}`);
    const row = await page.$eval('tr[data-stream="cam"]', (tr) => ({ links: Array.from(tr.querySelectorAll('a')).map((a) => a.getAttribute('href')), state: tr.querySelector('.state')!.textContent }));
    expect(row.links).toEqual([`/watch/cam?token=${TOKEN}`, `/overlay/cam?token=${TOKEN}`]);
    expect(row.state).toBe('live');
    await page.close();
    expect((await getJson(`http://127.0.0.1:${port}/`)).body).toMatchObject({ name: 'casa-live' }); // JSON for API clients
  });

  it('the overlay in rolling style: at most two lines of at most `chars` characters', async () => {
    const { page, errors } = await open(`http://127.0.0.1:${port}/overlay/cam?token=${TOKEN}&style=rolling&chars=24&size=30`);
    await page.waitForFunction(() => document.querySelectorAll('#box .line').length === 2, undefined, { timeout: 60_000 });
    for (let i = 0; i < 6; i++) {
      const lines = await page.$$eval('#box .line', (els) => els.map((e) => e.textContent ?? ''));
      expect(lines.length).toBeLessThanOrEqual(2);
      for (const l of lines) expect(l.length).toBeLessThanOrEqual(24);
      await sleep(500);
    }
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);

  it('HLS files need a viewer token; playlists asked for with ?token= carry it', async () => {
    expect((await fetch(`http://127.0.0.1:${port}/hls/cam/master.m3u8`)).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${port}/hls/cam/../casa-live.yaml?token=${TOKEN}`)).status).toBe(404);
    const master = await (await fetch(`http://127.0.0.1:${port}/hls/cam/master.m3u8?token=${TOKEN}`)).text();
    expect(master).toContain(`URI="subs.m3u8?token=${TOKEN}"`);
    expect(master).toContain(`video.m3u8?token=${TOKEN}`);
  });
});

describe('the HLS the daemon wrote', () => {
  it('ffprobe sees the video and the subtitle rendition; ffmpeg extracts cues that match the caption log (±1 segment)', async () => {
    // The stream ends (daemon stopped): the playlists are closed with EXT-X-ENDLIST, so that
    // ffmpeg 5 (whose WebVTT-in-HLS reading is experimental and needs the whole playlist) reads them.
    daemon!.child.kill('SIGTERM');
    expect((await daemon!.exited).code).toBe(0);
    const master = path.join(hlsDirOf(), 'master.m3u8');
    expect(readFileSync(path.join(hlsDirOf(), 'subs.m3u8'), 'utf8')).toContain('#EXT-X-ENDLIST');
    const probe = JSON.parse((await run(FFPROBE, ['-v', 'error', '-strict', 'experimental', '-print_format', 'json', '-show_streams', master])).stdout) as {
      streams: Array<{ codec_type: string; codec_name: string }>;
    };
    expect(probe.streams.map((s) => `${s.codec_type}:${s.codec_name}`).sort()).toEqual(['subtitle:webvtt', 'video:h264']);

    const vtt = (await run(FFMPEG, ['-hide_banner', '-v', 'error', '-strict', 'experimental', '-copyts', '-i', master, '-map', '0:s:0', '-f', 'webvtt', 'pipe:1'], { maxBuffer: 1 << 24 })).stdout;
    const cues = parseVtt(vtt);
    expect(cues.length).toBeGreaterThan(3);
    const log = captionLog().filter((c) => c.text.trim() !== '');
    const tolerance = SEGMENT + 0.05;
    for (const cue of cues) {
      // A cue ends with the caption that made it appear, of a frame at most a segment away.
      const newest = log.find((c) => cue.text.endsWith(norm(c.text)) && Math.abs(c.start - cue.start) <= tolerance);
      expect(newest, `cue ${JSON.stringify(cue)} comes from the caption log`).toBeDefined();
    }
    // And every caption of the window's span is in a cue that starts within a segment of it.
    const from = cues[0]!.start + tolerance;
    const to = cues.at(-1)!.start - tolerance;
    for (const c of log.filter((x) => x.start >= from && x.start <= to)) {
      const cue = cues.find((q) => q.text.includes(norm(c.text)) && q.start <= c.start + tolerance && q.end >= c.start - tolerance);
      expect(cue, `caption at ${c.start} "${c.text}" is in a cue`).toBeDefined();
    }
    // X-TIMESTAMP-MAP: each subtitle segment maps its local time to its video segment's first PTS.
    const seq = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(readFileSync(path.join(hlsDirOf(), 'video.m3u8'), 'utf8'))![1]);
    const sub = readFileSync(path.join(hlsDirOf(), `sub${seq}.vtt`), 'utf8');
    const map = /X-TIMESTAMP-MAP=MPEGTS:(\d+),LOCAL:(\d\d):(\d\d):(\d\d)\.(\d{3})/.exec(sub)!;
    const videoStart = Number(JSON.parse((await run(FFPROBE, ['-v', 'error', '-print_format', 'json', '-show_format', path.join(hlsDirOf(), `v${seq}.ts`)])).stdout).format.start_time);
    expect(Number(map[1]) / 90_000).toBeCloseTo(videoStart, 3);
    expect(Number(map[2]) * 3600 + Number(map[3]) * 60 + Number(map[4]) + Number(map[5]) / 1000).toBeCloseTo(videoStart, 2);
  }, 120_000);
});

function norm(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** Cues of a WebVTT file: times in seconds, text lines joined with a space, entities decoded. */
function parseVtt(text: string): Array<{ start: number; end: number; text: string }> {
  const t = (s: string): number => {
    const p = s.split(':').map(Number);
    return p.length === 3 ? p[0]! * 3600 + p[1]! * 60 + p[2]! : p[0]! * 60 + p[1]!;
  };
  const out: Array<{ start: number; end: number; text: string }> = [];
  for (const block of text.split(/\n\n+/)) {
    const lines = block.split('\n');
    const i = lines.findIndex((l) => l.includes('-->'));
    if (i < 0) continue;
    const [a, b] = lines[i]!.split('-->').map((x) => x.trim().split(' ')[0]!);
    const body = lines.slice(i + 1).join(' ').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
    out.push({ start: t(a!), end: t(b!), text: norm(body) });
  }
  return out;
}

function captionLog(): Array<{ start: number; text: string }> {
  const dir = path.join(tmp.dir, 'data', 'captions', 'cam');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
    .flatMap((f) => readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean))
    .map((l) => JSON.parse(l) as { type: string; start: number; text: string })
    .filter((e) => e.type === 'caption');
}

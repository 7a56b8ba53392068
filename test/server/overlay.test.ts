/// <reference lib="dom" />
// The overlay page in headless Chromium (Debian's chromium driven by playwright-core): it
// shows the captions of a live stream (stand-in pipeline, fixtures/scripted-pipeline.mjs, so
// that styles and ordering can be checked on known text; on the real model: live-model.test.ts),
// loads nothing from outside, and recovers after the daemon is killed and restarted,
// resuming by seq without showing a caption twice.
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TOKEN, ensureBuilt, launchChromium, freePort, removeDir, startDaemon, tmpDir, writeConfig, type Daemon } from './helpers.js';

let browser: Browser;
let dir: string;
const daemons: Daemon[] = [];

beforeAll(async () => {
  await ensureBuilt();
  dir = await tmpDir();
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
  await removeDir(dir);
});

it('shows live captions and recovers after the daemon restarts', async () => {
  const port = await freePort();
  const configPath = await writeConfig(dir, {
    listen: { host: '127.0.0.1', port },
    dataDir: path.join(dir, 'data'),
    streams: [{ id: 'stage', input: 'rtmp://127.0.0.1/live/stage' }],
  });
  const a = await startDaemon(configPath, ['--run', 'A', '--frame-ms', '150']);
  daemons.push(a);

  const page = await browser.newPage();
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket|ERR_CONNECTION_REFUSED/.test(m.text())) consoleErrors.push(m.text());
  });
  await page.goto(`http://127.0.0.1:${port}/overlay/stage?token=${TOKEN}&lines=3&size=60&color=%23ffee00&partial=0&debug=1`);

  const committedLines = () => page.$$eval('#box .line:not(.partial)', (els) => els.map((e) => ({ text: e.textContent ?? '', seq: Number(e.getAttribute('data-seq')) })));
  await page.waitForFunction(() => document.querySelectorAll('#box .line').length === 3, undefined, { timeout: 10_000 });
  const lines = await committedLines();
  expect(lines.map((l) => l.text)).toEqual([expect.stringMatching(/^stage frame \d+ run A$/), expect.anything(), expect.anything()]);
  const style = await page.evaluate(() => {
    const line = document.querySelector('#box .line')!;
    return {
      body: getComputedStyle(document.body).backgroundColor,
      html: getComputedStyle(document.documentElement).backgroundColor,
      fontSize: getComputedStyle(line).fontSize,
      color: getComputedStyle(line).color,
    };
  });
  expect(style).toEqual({ body: 'rgba(0, 0, 0, 0)', html: 'rgba(0, 0, 0, 0)', fontSize: '60px', color: 'rgb(255, 238, 0)' });

  // Kill the daemon: the page notices and retries; restart it on the same port.
  a.child.kill('SIGKILL');
  await a.exited;
  await page.waitForFunction(() => document.body.getAttribute('data-state') === 'reconnecting', undefined, { timeout: 10_000 });
  const seenBefore = await committedLines();
  const b = await startDaemon(configPath, ['--run', 'B', '--frame-ms', '150']);
  daemons.push(b);
  await page.waitForFunction(() => Array.from(document.querySelectorAll("#box .line")).filter((e) => e.textContent?.includes('run B')).length >= 2, undefined, { timeout: 20_000 });
  expect(await page.getAttribute('body', 'data-state')).toBe('live');
  const after = await committedLines();
  const seqs = after.map((l) => l.seq);
  for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
  expect(Math.min(...seqs)).toBeGreaterThan(Math.max(...seenBefore.map((l) => l.seq)) - 1);

  // Nothing but this daemon was contacted.
  expect(requests.every((u) => u.startsWith(`http://127.0.0.1:${port}/`) || u.startsWith(`ws://127.0.0.1:${port}/`))).toBe(true);
  expect(consoleErrors).toEqual([]);
  await page.close();
  b.child.kill('SIGTERM');
  expect((await b.exited).code).toBe(0);
});

it('debug=1: the badge keeps the last seq current on every event, and says when the token is wrong', async () => {
  const port = await freePort();
  const configPath = await writeConfig(dir, {
    listen: { host: '127.0.0.1', port },
    dataDir: path.join(dir, 'data-badge'),
    streams: [{ id: 'stage', input: 'rtmp://127.0.0.1/live/stage' }],
  });
  const d = await startDaemon(configPath, ['--frame-ms', '100']);
  daemons.push(d);
  const page = await browser.newPage();
  try {
    await page.goto(`http://127.0.0.1:${port}/overlay/stage?token=${TOKEN}&debug=1`);
    const badge = () => page.evaluate(() => ({ text: document.getElementById('state')!.textContent ?? '', lastSeq: document.body.getAttribute('data-last-seq') }));
    await page.waitForFunction(() => Number(document.body.getAttribute('data-last-seq')) > 20, undefined, { timeout: 10_000 });
    const first = await badge();
    await page.waitForFunction((seq) => Number(document.body.getAttribute('data-last-seq')) > seq + 10, Number(first.lastSeq), { timeout: 10_000 });
    const later = await badge();
    for (const b of [first, later]) expect(b.text).toMatch(new RegExp(`^live #${b.lastSeq}$`));

    await page.goto(`http://127.0.0.1:${port}/overlay/stage?token=not-the-token-0123456789&debug=1`);
    await page.waitForFunction(() => document.body.getAttribute('data-state') === 'unauthorized', undefined, { timeout: 10_000 });
    expect((await badge()).text).toBe('unauthorized: check the token in the URL');
  } finally {
    await page.close();
    d.child.kill('SIGTERM');
    await d.exited;
  }
});

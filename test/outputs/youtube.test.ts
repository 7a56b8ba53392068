// YouTube Live captions against a local HTTP receiver that checks Google's format line by line
// (support.google.com/youtube/answer/6077032): POST, text/plain, `seq` increasing by one per
// new batch and unchanged on a retry, body lines alternating a UTC time YYYY-MM-DDTHH:MM:SS.mmm
// (optionally " region:reg1#cue1") and the caption text, times monotonic. The receiver fails
// some posts (503, a dropped connection) to check the retries send the same batch, never a
// caption twice under two seqs. Then the daemon (stand-in pipeline) posts a stream's captions
// to the URL given as a secret in its config.
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { YouTubeCaptionSink } from '../../src/sinks/youtube.js';
import type { CaptionEvent } from '../../src/events.js';
import { ensureBuilt, removeDir, startDaemon, tmpDir, until, writeConfig, type Daemon } from '../server/helpers.js';
import { DEV_MODEL, runCli, setupCliTests } from '../cli/helpers.js';

interface Post {
  seq: number;
  body: string;
  contentType: string;
  captions: Array<{ time: string; region?: string; text: string }>;
  status: number;
}

const TIME_LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})(?: region:(\S+))?$/;

/** The receiver: validates every post; `fail(seq, attempt)` picks an answer (a status, or 'drop'). */
class Receiver {
  readonly posts: Post[] = [];
  readonly problems: string[] = [];
  private readonly server: http.Server;
  private readonly tries = new Map<number, number>();
  port = 0;

  constructor(private readonly fail: (seq: number, attempt: number) => number | 'drop' = () => 200) {
    this.server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString('utf8')));
      req.on('end', () => this.answer(req, res, body));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
    return `http://127.0.0.1:${this.port}/closedcaption?cid=abc-key&ns=live`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  /** Accepted posts, one per seq. */
  accepted(): Post[] {
    return this.posts.filter((p) => p.status === 200);
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const seq = Number(url.searchParams.get('seq'));
    const problem = (p: string): void => void this.problems.push(`seq ${seq}: ${p}`);
    if (req.method !== 'POST') problem(`method ${req.method}`);
    if (url.searchParams.get('cid') !== 'abc-key' || url.searchParams.get('ns') !== 'live') problem('the URL\'s own parameters were lost');
    if (!Number.isInteger(seq) || seq < 1) problem(`bad seq ${url.searchParams.get('seq')}`);
    const captions = parseBody(body, problem);
    const attempt = (this.tries.get(seq) ?? 0) + 1;
    this.tries.set(seq, attempt);
    const verdict = this.fail(seq, attempt);
    this.posts.push({ seq, body, contentType: String(req.headers['content-type']), captions, status: verdict === 'drop' ? 0 : verdict });
    if (verdict === 'drop') req.socket.destroy();
    else res.writeHead(verdict, { 'Content-Type': 'text/plain' }).end(verdict === 200 ? `${new Date().toISOString().slice(0, 23)}\n` : 'try later');
  }
}

/** Checks the body line by line: time line, text line, …, a final newline. */
function parseBody(body: string, problem: (p: string) => void): Post['captions'] {
  if (!body.endsWith('\n')) problem('body does not end with a newline');
  const lines = body.split('\n').slice(0, -1);
  if (lines.length === 0 || lines.length % 2 !== 0) problem(`odd number of lines (${lines.length})`);
  const out: Post['captions'] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const m = TIME_LINE.exec(lines[i]!);
    if (!m) problem(`line ${i + 1} is not a time line: ${JSON.stringify(lines[i])}`);
    else if (Number.isNaN(Date.parse(`${m[1]}Z`))) problem(`line ${i + 1}: not a date`);
    const text = lines[i + 1]!;
    if (text === '' || TIME_LINE.test(text)) problem(`line ${i + 2} is not caption text`);
    out.push({ time: m?.[1] ?? '', ...(m?.[2] ? { region: m[2] } : {}), text });
  }
  return out;
}

function caption(seq: number, text: string, latencyMs = 200): CaptionEvent {
  return { type: 'caption', stream: 'lobby', seq, frame: seq, start: seq / 2, end: seq / 2 + 0.5, text, latencyMs };
}

/** Every accepted caption once, in order; retried posts carried the same body. */
function expectNoDuplicates(r: Receiver): void {
  const bySeq = new Map<number, string>();
  for (const p of r.posts) {
    const prev = bySeq.get(p.seq);
    if (prev !== undefined) expect(p.body, `seq ${p.seq} retried with another body`).toBe(prev);
    bySeq.set(p.seq, p.body);
  }
  const seqs = r.accepted().map((p) => p.seq);
  expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i)); // +1 per new batch, none twice
  const texts = r.accepted().flatMap((p) => p.captions.map((c) => c.text));
  expect(new Set(texts).size).toBe(texts.length);
  const times = r.accepted().flatMap((p) => p.captions.map((c) => Date.parse(`${c.time}Z`)));
  for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThan(times[i - 1]!);
}

describe('YouTube caption sink', () => {
  it('posts the documented format; retries 5xx and dropped connections with the same seq and body', async () => {
    // seq 2 fails twice with 503; seq 3 (the captions that came meanwhile) with a dropped connection, then 429.
    const r = new Receiver((seq, attempt) => (seq === 2 && attempt <= 2 ? 503 : seq === 3 && attempt === 1 ? 'drop' : seq === 3 && attempt === 2 ? 429 : 200));
    const url = await r.listen();
    const sink = new YouTubeCaptionSink({ stream: 'lobby', url, minIntervalMs: 50, clockOffsetMs: -1500, region: 'reg1#cue1', logger: silentLogger() });
    const sent: string[] = [];
    const t0 = Date.now();
    try {
      for (let i = 1; i <= 12; i++) {
        const text = i === 7 ? 'two\nlines' : `caption number ${i}`;
        sink.push(caption(i, text));
        sink.push({ type: 'token', stream: 'lobby', seq: 1000 + i, frame: i, pts: 0, text: ' ignored' });
        sink.push({ ...caption(2000 + i, 'other stream'), stream: 'stage' });
        sink.push(caption(3000 + i, '   ')); // silent frame: nothing to send
        sent.push(text.replace('\n', '<br>'));
        await new Promise((res) => setTimeout(res, 30));
      }
      await until(() => r.accepted().flatMap((p) => p.captions).length >= 12, 30_000, 'every caption accepted');
    } finally {
      await sink.close();
      await r.close();
    }
    expect(r.problems).toEqual([]);
    expect(r.posts.every((p) => /^text\/plain/.test(p.contentType))).toBe(true);
    expect(r.accepted().flatMap((p) => p.captions.map((c) => c.text))).toEqual(sent);
    expect(r.accepted().every((p) => p.captions.every((c) => c.region === 'reg1#cue1'))).toBe(true);
    // The retries happened, each with its batch's seq.
    expect(r.posts.filter((p) => p.seq === 2).map((p) => p.status)).toEqual([503, 503, 200]);
    expect(r.posts.filter((p) => p.seq === 3).map((p) => p.status)).toEqual([0, 429, 200]);
    expectNoDuplicates(r);
    // UTC times: frame arrival (now − latency 200 ms) + the −1.5 s offset.
    const first = Date.parse(`${r.accepted()[0]!.captions[0]!.time}Z`);
    expect(first).toBeGreaterThanOrEqual(t0 - 1700 - 50);
    expect(first).toBeLessThanOrEqual(t0 - 1700 + 2000);
  });

  it('drops a batch the receiver refuses for good (4xx) and goes on with the next seq', async () => {
    const r = new Receiver((seq) => (seq === 1 ? 403 : 200));
    const url = await r.listen();
    const sink = new YouTubeCaptionSink({ stream: 'lobby', url, minIntervalMs: 0, logger: silentLogger() });
    try {
      sink.push(caption(1, 'refused'));
      await until(() => r.posts.length >= 1, 10_000, 'the first post');
      sink.push(caption(2, 'accepted'));
      await until(() => r.accepted().length >= 1, 10_000, 'the second post');
    } finally {
      await sink.close();
      await r.close();
    }
    expect(r.posts.map((p) => [p.seq, p.status])).toEqual([
      [1, 403],
      [2, 200],
    ]);
    expect(sink.delivery.dropped).toBe(1);
  });
});

describe('YouTube output of the daemon', () => {
  let dir: string;
  let daemon: Daemon | undefined;
  beforeAll(async () => {
    await ensureBuilt();
    dir = await tmpDir('casa-youtube-');
  }, 120_000);
  afterAll(async () => {
    if (daemon && daemon.child.exitCode === null) daemon.child.kill('SIGKILL');
    await removeDir(dir);
  });

  it("posts one stream's captions to the URL given as a secret, retrying a 500", async () => {
    const r = new Receiver((seq, attempt) => (seq === 2 && attempt === 1 ? 500 : 200));
    const url = await r.listen();
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path.join(dir, 'youtube-url'), `${url}\n`);
    const configPath = await writeConfig(dir, {
      streams: [
        { id: 'lobby', input: 'rtmp://127.0.0.1/live/lobby' },
        { id: 'stage', input: 'rtmp://127.0.0.1/live/stage' },
      ],
      outputs: { youtube: [{ stream: 'lobby', url: { file: 'youtube-url' }, minIntervalMs: 200 }] },
    });
    daemon = await startDaemon(configPath, ['--frame-ms', '150', '--run', 'Y']);
    try {
      await until(() => r.accepted().flatMap((p) => p.captions).length >= 8, 30_000, 'captions posted');
      daemon.child.kill('SIGTERM');
      expect((await daemon.exited).code).toBe(0);
    } finally {
      await r.close();
    }
    expect(r.problems).toEqual([]);
    const texts = r.accepted().flatMap((p) => p.captions.map((c) => c.text));
    expect(texts.every((t) => /^lobby frame \d+ run Y$/.test(t))).toBe(true);
    const frames = texts.map((t) => Number(/frame (\d+)/.exec(t)![1]));
    expect(frames).toEqual(frames.map((_, i) => frames[0]! + i)); // every frame, in order
    expect(r.posts.filter((p) => p.seq === 2).map((p) => p.status)).toEqual([500, 200]);
    expectNoDuplicates(r);
  });
});

describe('casa-live caption --youtube', () => {
  const tmp = setupCliTests('casa-youtube-cli-', { 'clip.mp4': 4 });

  it('posts the run\'s captions, the URL read from the environment (env:NAME)', async () => {
    const r = new Receiver();
    const url = await r.listen();
    try {
      const run = await runCli(['caption', tmp.clip('clip.mp4'), '--model', DEV_MODEL, '--seed', '1', '--quiet', '--jsonl', `${tmp.dir}/c.jsonl`, '--youtube', 'env:YT_CAPTION_URL'], {
        env: { ...process.env, YT_CAPTION_URL: url },
      });
      expect(run.code, run.stderr).toBe(0);
    } finally {
      await r.close();
    }
    expect(r.problems).toEqual([]);
    const { readFileSync } = await import('node:fs');
    const said = readFileSync(`${tmp.dir}/c.jsonl`, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; text?: string })
      .filter((e) => e.type === 'caption' && e.text!.trim() !== '')
      .map((e) => e.text!.trim());
    expect(said.length).toBeGreaterThan(0);
    expect(r.accepted().flatMap((p) => p.captions.map((c) => c.text))).toEqual(said);
    expectNoDuplicates(r);
    const bad = await runCli(['caption', tmp.clip('clip.mp4'), '--model', DEV_MODEL, '--youtube', 'env:NOT_SET_ANYWHERE']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('NOT_SET_ANYWHERE is not set');
  });
});

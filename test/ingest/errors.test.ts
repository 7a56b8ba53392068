/**
 * Each failure gives its typed error with a one-sentence message, files fail fast, live inputs
 * retry, and no ffmpeg child is left behind: after errors, after stop, after the consumer throws.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionRefusedError,
  CorruptInputError,
  DeviceUnavailableError,
  DnsFailureError,
  FfmpegNotFoundError,
  FileNotFoundError,
  FileUnreadableError,
  IngestError,
  NoVideoStreamError,
  StreamNotFoundError,
  UnauthorizedError,
  UnsupportedInputError,
  openFrameSource,
  resolveFfmpeg,
  validateInput,
  type SourceOptions,
} from '../../src/ingest/index.js';
import { InputError, UsageError } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import { ffmpeg, freePort, makeClip, sleep, tempDir, waitFor, x264Args } from './helpers/media.js';
import { strayChildren } from './helpers/procs.js';
import { OpenedSources, readToEnd, recordStatuses } from './helpers/sources.js';

const tmp = tempDir();
const sources = new OpenedSources();
const open = (opts: SourceOptions) => sources.open(opts);
let clip: string;

beforeAll(async () => {
  clip = join(tmp.dir, 'clip.mp4');
  await makeClip(clip, { size: '160x120', rate: 25, seconds: 4, codecArgs: x264Args() });
});
afterEach(() => sources.stopAll());
afterAll(() => tmp.cleanup());

/** Runs a source to its end; returns the error it threw (or undefined), its frames, statuses and run time. */
async function drain(opts: SourceOptions): Promise<Awaited<ReturnType<typeof readToEnd>> & { ms: number }> {
  const t0 = Date.now();
  const result = await readToEnd(open(opts));
  return { ...result, ms: Date.now() - t0 };
}

function expectOneSentence(message: string): void {
  expect(message).toMatch(/^[A-Za-z].*\.$/);
  expect(message.split(/\.\s+[A-Z]/)).toHaveLength(1);
  expect(message.length).toBeLessThan(300);
}

const W = { width: 32, height: 32 };

describe('file errors fail fast', () => {
  it('missing file → FileNotFoundError', async () => {
    const { error, statuses, ms } = await drain({ input: join(tmp.dir, 'nope.mp4'), ...W });
    expect(error).toBeInstanceOf(FileNotFoundError);
    expect(error).toBeInstanceOf(InputError);
    expect((error as IngestError).code).toBe('file-not-found');
    expect((error as Error).message).toBe(`Input file ${join(tmp.dir, 'nope.mp4')} does not exist; check the path.`);
    expectOneSentence((error as Error).message);
    expect(statuses.map((s) => s.state)).toEqual(['error']);
    expect(statuses[0]!.code).toBe('file-not-found');
    expect(ms).toBeLessThan(3000);
    expect(strayChildren()).toEqual([]);
  });

  it('a directory → FileUnreadableError', async () => {
    const dir = join(tmp.dir, 'adir');
    mkdirSync(dir);
    const { error } = await drain({ input: dir, ...W });
    expect(error).toBeInstanceOf(FileUnreadableError);
    expect((error as Error).message).toMatch(/cannot be read \(it is a directory\)/);
    expectOneSentence((error as Error).message);
  });

  it('random bytes named .mp4 → CorruptInputError with ffmpeg stderr in details', async () => {
    const f = join(tmp.dir, 'garbage.mp4');
    writeFileSync(f, Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7919) % 251)));
    const { error, frames } = await drain({ input: f, ...W });
    expect(frames).toHaveLength(0);
    expect(error).toBeInstanceOf(CorruptInputError);
    expect((error as IngestError).code).toBe('corrupt-input');
    expectOneSentence((error as Error).message);
    expect((error as IngestError).details.join('\n')).toMatch(/Invalid data found|moov atom/);
    expect(strayChildren()).toEqual([]);
  });

  it('an MP4 cut in half (index at the end, lost) → CorruptInputError', async () => {
    const whole = join(tmp.dir, 'whole.mp4');
    await makeClip(whole, { size: '160x120', rate: 25, seconds: 3, codecArgs: ['-c:v', 'libx264', '-preset', 'ultrafast'] });
    const bytes = readFileSync(whole);
    const cut = join(tmp.dir, 'truncated.mp4');
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const { error } = await drain({ input: cut, ...W });
    expect(error).toBeInstanceOf(CorruptInputError);
    expect((error as Error).message).toMatch(/corrupt or truncated.*moov atom not found/);
  });

  it('an empty file → CorruptInputError without running ffmpeg', async () => {
    const f = join(tmp.dir, 'empty.mkv');
    writeFileSync(f, '');
    const { error } = await drain({ input: f, ...W });
    expect(error).toBeInstanceOf(CorruptInputError);
    expect((error as Error).message).toMatch(/the file is empty/);
  });

  it('audio only → NoVideoStreamError', async () => {
    const f = join(tmp.dir, 'audio.m4a');
    await ffmpeg(['-f', 'lavfi', '-i', 'sine=duration=1', '-c:a', 'aac', f]);
    const { error } = await drain({ input: f, ...W });
    expect(error).toBeInstanceOf(NoVideoStreamError);
    expect((error as Error).message).toBe(`Input ${f} has no video stream, so there is nothing to caption.`);
    expect(strayChildren()).toEqual([]);
  });
});

describe('network errors', () => {
  it('DNS failure (.invalid) → DnsFailureError', async () => {
    const { error, ms } = await drain({ input: 'rtsp://camera.invalid/stream', ...W, reconnect: { maxRetries: 0 } });
    expect(error).toBeInstanceOf(DnsFailureError);
    expect((error as Error).message).toBe(
      'Cannot resolve host name camera.invalid of input rtsp://camera.invalid/stream; check the address and DNS.',
    );
    expect(ms).toBeLessThan(15_000);
    expect(strayChildren()).toEqual([]);
  });

  it('connection refused (closed port) → ConnectionRefusedError, for rtsp, rtmp and http', async () => {
    const port = await freePort();
    for (const url of [`rtsp://127.0.0.1:${port}/x`, `rtmp://127.0.0.1:${port}/live/x`, `http://127.0.0.1:${port}/x.m3u8`]) {
      const { error } = await drain({ input: url, ...W, reconnect: { maxRetries: 0 } });
      expect(error, url).toBeInstanceOf(ConnectionRefusedError);
      expect((error as Error).message).toBe(
        `Connection to 127.0.0.1:${port} for input ${url} was refused; check that the server is running and the port is right.`,
      );
    }
    expect(strayChildren()).toEqual([]);
  });

  it('live inputs retry with backoff (unlimited by default) and report each failure; stop ends it', async () => {
    const port = await freePort();
    const source = open({ input: `rtsp://127.0.0.1:${port}/x`, ...W, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    const statuses = recordStatuses(source);
    const it = source.frames()[Symbol.asyncIterator]();
    const next = it.next();
    await waitFor(() => statuses.filter((s) => s.state === 'reconnecting').length >= 4, 10_000, '4 retries');
    const retries = statuses.filter((s) => s.state === 'reconnecting');
    expect(retries.every((s) => s.code === 'connection-refused')).toBe(true);
    expect(retries.map((s) => s.reconnects)).toEqual(retries.map((_, i) => i + 1));
    for (const s of retries) expect(s.retryInMs).toBeLessThanOrEqual(200);
    await source.stop();
    await expect(next).resolves.toEqual({ done: true, value: undefined });
    expect(statuses.at(-1)).toMatchObject({ state: 'ended', reason: 'stopped' });
    expect(strayChildren()).toEqual([]);
  });

  it('maxRetries bounds the retries, then the last error is thrown, saying that the source gave up', async () => {
    const port = await freePort();
    const { error, statuses } = await drain({
      input: `rtsp://127.0.0.1:${port}/x`,
      ...W,
      reconnect: { initialDelayMs: 20, maxDelayMs: 50, maxRetries: 2 },
    });
    expect(error).toBeInstanceOf(ConnectionRefusedError);
    expect((error as IngestError).message).toMatch(/; gave up after 3 failed attempts\.$/);
    expect((error as IngestError).gaveUp).toBe('gave up after 3 failed attempts');
    expect(statuses.map((s) => s.state)).toEqual(['connecting', 'reconnecting', 'reconnecting', 'error']);
    expect(statuses.filter((s) => s.state === 'reconnecting').map((s) => [s.retry, s.retryInMs! <= 50])).toEqual([[1, true], [2, true]]);
  });

  it('policy never: a live input fails at its first failure', async () => {
    const port = await freePort();
    const { error, statuses } = await drain({ input: `rtsp://127.0.0.1:${port}/x`, ...W, reconnect: { policy: 'never' } });
    expect(error).toBeInstanceOf(ConnectionRefusedError);
    expect(statuses.map((s) => s.state)).toEqual(['connecting', 'error']);
  });

  it('firstFrameDeadlineMs: gives up when no frame came within it, saying so', async () => {
    const port = await freePort();
    const { error, ms } = await drain({ input: `rtsp://127.0.0.1:${port}/x`, ...W, reconnect: { initialDelayMs: 100, maxDelayMs: 400, firstFrameDeadlineMs: 1500 } });
    expect(error).toBeInstanceOf(ConnectionRefusedError);
    expect((error as Error).message).toMatch(/; gave up: no frame within 1\.5 s \(\d+ attempts\)\.$/);
    expect(ms).toBeLessThan(1500 + 1000);
  });

  it('quotes an input of any length clipped: no log line, message or status grows with it', async () => {
    const port = await freePort();
    // http: ffmpeg itself runs (and logs its command line and stderr, which quote the input).
    const input = `http://127.0.0.1:${port}/${'x'.repeat(100_000)}`;
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug', destination: { write: (line: string) => void lines.push(line) } });
    const { error, statuses } = await drain({ input, ...W, logger, reconnect: { initialDelayMs: 20, maxDelayMs: 50, maxRetries: 2 } });
    expect(error).toBeInstanceOf(ConnectionRefusedError);
    expect(lines.length).toBeGreaterThan(5);
    expect(lines.some((l) => l.includes('"msg":"ffmpeg exited"'))).toBe(true);
    for (const line of lines) expect(line.length).toBeLessThan(8192);
    expect((error as Error).message.length).toBeLessThan(600);
    for (const s of statuses) expect((s.reason ?? '').length).toBeLessThan(600);
  });

  describe('RTSP 401 / 404 from a hand-written responder', () => {
    let server: Server;
    let port: number;
    beforeAll(async () => {
      // Answers OPTIONS, then DESCRIBE with 401 for /private and 404 for anything else.
      server = createServer((sock) => {
        let buf = '';
        sock.on('error', () => {});
        sock.on('data', (d) => {
          buf += d.toString('latin1');
          let end: number;
          while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
            const req = buf.slice(0, end);
            buf = buf.slice(end + 4);
            const [method, uri] = req.split(' ');
            const cseq = /CSeq:\s*(\d+)/i.exec(req)?.[1] ?? '0';
            const status =
              method === 'OPTIONS' ? '200 OK' : uri!.includes('/private') ? '401 Unauthorized' : '404 Not Found';
            const extra = status.startsWith('401') ? 'WWW-Authenticate: Basic realm="cam"\r\n' : '';
            sock.write(`RTSP/1.0 ${status}\r\nCSeq: ${cseq}\r\n${extra}Public: OPTIONS, DESCRIBE\r\n\r\n`);
          }
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      port = (server.address() as { port: number }).port;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    it('401 → UnauthorizedError, with credentials redacted in the message', async () => {
      const { error } = await drain({ input: `rtsp://admin:hunter2@127.0.0.1:${port}/private`, ...W, reconnect: { maxRetries: 0 } });
      expect(error).toBeInstanceOf(UnauthorizedError);
      expect((error as Error).message).toBe(
        `The server refused input rtsp://admin:***@127.0.0.1:${port}/private with 401 Unauthorized; check the user name and password in the URL.`,
      );
      expect((error as Error).message).not.toContain('hunter2');
      expect((error as IngestError).details.join('\n')).toMatch(/401/);
    });

    it('404 → StreamNotFoundError', async () => {
      const { error } = await drain({ input: `rtsp://127.0.0.1:${port}/nothing`, ...W, reconnect: { maxRetries: 0 } });
      expect(error).toBeInstanceOf(StreamNotFoundError);
      expect((error as Error).message).toBe(
        `The server has no stream at rtsp://127.0.0.1:${port}/nothing (404 Not Found); check the stream path.`,
      );
      expect(strayChildren()).toEqual([]);
    });
  });
});

describe('devices', () => {
  it('a missing V4L2 device → DeviceUnavailableError (devices retry like live inputs; here maxRetries 0)', async () => {
    const { error, statuses } = await drain({ input: '/dev/video99', ...W, reconnect: { maxRetries: 0 } });
    expect(error).toBeInstanceOf(DeviceUnavailableError);
    expect((error as Error).message).toBe(
      'Video device /dev/video99 is not available (no such device); check that it is plugged in and not in use.',
    );
    expect(statuses.at(-1)).toMatchObject({ state: 'error', code: 'device-unavailable' });
    expect(strayChildren()).toEqual([]);
  });
});

describe('usage errors are refused up front', () => {
  it('unknown scheme → UnsupportedInputError listing the supported ones', () => {
    expect(() => validateInput('gopher://example.org/video')).toThrow(UnsupportedInputError);
    try {
      validateInput('gopher://example.org/video');
    } catch (e) {
      expect(e).toBeInstanceOf(UsageError);
      expect((e as Error).message).toBe(
        'Input scheme "gopher://" is not supported; casa-live reads file://, rtsp://, rtsps://, rtmp://, rtmps://, http://, https://, srt://, udp://, a file path, /dev/videoN or - (stdin).',
      );
    }
    expect(() => openFrameSource({ input: 'ftp://x/y.mp4', ...W })).toThrow(UnsupportedInputError);
    expect(() => openFrameSource({ input: '', ...W })).toThrow(UnsupportedInputError);
    expect(() => validateInput('rtsp:///nohost')).toThrow(/has no host name/);
  });

  it('bad options → UsageError', () => {
    expect(() => openFrameSource({ input: clip, width: 0, height: 10 })).toThrow(UsageError);
    expect(() => openFrameSource({ input: clip, ...W, fps: 0 })).toThrow(/fps must be/);
    expect(() => openFrameSource({ input: clip, ...W, fit: 'zoom' as never })).toThrow(/fit must be/);
  });

  it('a configured ffmpeg that does not exist → FfmpegNotFoundError', async () => {
    await expect(resolveFfmpeg({ ffmpegPath: join(tmp.dir, 'no-ffmpeg') })).rejects.toThrow(FfmpegNotFoundError);
    const { error } = await drain({ input: clip, ...W, ffmpegPath: join(tmp.dir, 'no-ffmpeg') });
    expect(error).toBeInstanceOf(FfmpegNotFoundError);
    expect((error as Error).message).toMatch(/is not an executable file/);
  });
});

describe('no orphan ffmpeg', () => {
  it('after stop() in the middle of a file', async () => {
    const source = open({ input: clip, ...W });
    const it = source.frames()[Symbol.asyncIterator]();
    await it.next();
    expect(strayChildren().map((c) => c.comm)).toContain('ffmpeg');
    await source.stop();
    expect(strayChildren()).toEqual([]);
    await expect(it.next()).resolves.toEqual({ done: true, value: undefined });
  });

  it('after stop() before ffmpeg has even started, and stop() twice', async () => {
    const source = open({ input: clip, ...W });
    const it = source.frames()[Symbol.asyncIterator]();
    const first = it.next();
    const stopping = source.stop();
    await Promise.all([stopping, source.stop()]);
    await expect(first).resolves.toEqual({ done: true, value: undefined });
    await sleep(100);
    expect(strayChildren()).toEqual([]);
  });

  it('after the consumer throws inside for-await', async () => {
    const source = open({ input: clip, ...W });
    const statuses = recordStatuses(source);
    await expect(
      (async () => {
        for await (const f of source.frames()) {
          if (f.index === 2) throw new Error('consumer bug');
        }
      })(),
    ).rejects.toThrow('consumer bug');
    expect(strayChildren()).toEqual([]);
    expect(statuses.at(-1)).toMatchObject({ state: 'ended', reason: 'stopped' });
  });

  it('after break out of for-await on a live input that is retrying', async () => {
    const port = await freePort();
    const source = open({ input: `rtsp://127.0.0.1:${port}/x`, ...W, reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
    const waiting = (async () => {
      for await (const _ of source.frames()) break;
    })();
    await sleep(300);
    await source.stop();
    await waiting;
    expect(strayChildren()).toEqual([]);
  });

  it('a status listener that throws does not break the source', async () => {
    const source = open({ input: clip, ...W });
    source.on('status', () => {
      throw new Error('listener bug');
    });
    let n = 0;
    for await (const _ of source.frames()) n++;
    expect(n).toBe(8);
    expect(strayChildren()).toEqual([]);
  });

  it('after the iterator ends at EOF and after maxFrames', async () => {
    const { frames } = await drain({ input: clip, ...W });
    expect(frames.length).toBe(8);
    expect(strayChildren()).toEqual([]);
    const limited = await drain({ input: clip, ...W, maxFrames: 3 });
    expect(limited.frames.map((f) => f.index)).toEqual([0, 1, 2]);
    expect(limited.statuses.at(-1)).toMatchObject({ state: 'ended', reason: 'maxFrames reached' });
    expect(strayChildren()).toEqual([]);
  });
});

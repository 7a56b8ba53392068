/** Pure parts: inputs, the ffmpeg command line, stderr parsing, failure classification, backoff. */
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import {
  backoffDelay,
  classifyInput,
  openFrameSource,
  defaultStartSlots,
  StartQueue,
  FAST_RETRY,
  gaveUpReason,
  ingestRetryPolicy,
  nextRetry,
  retryingReason,
  redactUrl,
  validateInput,
  type AttemptFailure,
  type SourceKind,
} from '../../src/ingest/index.js';
import { buildFfmpegArgs, buildFilterGraph } from '../../src/ingest/ffmpeg-args.js';
import { classifyFailure, lastMeaningful, parseDurationLine, parseShowinfoLine } from '../../src/ingest/ffmpeg-stderr.js';

const features = { fpsMode: true, rtspTimeoutOption: '-timeout' as const };

describe('inputs', () => {
  it('classifies paths, URLs, devices and stdin', () => {
    expect(classifyInput('clip.mp4')).toMatchObject({ kind: 'file', scheme: 'file', ffmpegInput: `file:${process.cwd()}/clip.mp4` });
    expect(classifyInput('/tmp/a:b.mkv').ffmpegInput).toBe('file:/tmp/a:b.mkv');
    expect(classifyInput('file:///tmp/x%20y.mp4')).toMatchObject({ kind: 'file', path: '/tmp/x y.mp4' });
    expect(classifyInput('-')).toMatchObject({ kind: 'stdin', ffmpegInput: 'pipe:0' });
    expect(classifyInput('/dev/video0')).toMatchObject({ kind: 'device', scheme: 'v4l2' });
    expect(classifyInput('RTSP://cam.local/s')).toMatchObject({ kind: 'live', scheme: 'rtsp', host: 'cam.local', port: 554 });
    expect(classifyInput('rtmp://h:1936/app/key')).toMatchObject({ scheme: 'rtmp', port: 1936 });
    expect(classifyInput('https://cdn.example/live.m3u8')).toMatchObject({ kind: 'live', scheme: 'https', port: 443 });
    expect(classifyInput('srt://10.0.0.1:9000?mode=caller')).toMatchObject({ scheme: 'srt', port: 9000 });
    expect(classifyInput('udp://@239.0.0.1:1234')).toMatchObject({ scheme: 'udp', host: '239.0.0.1' });
    for (const bad of ['gopher://x', 'ftp://x/y', 'rtp://1.2.3.4:5000']) expect(() => validateInput(bad)).toThrow(/not supported/);
  });

  it('redacts credentials', () => {
    expect(redactUrl('rtsp://admin:s3cret@cam/stream')).toBe('rtsp://admin:***@cam/stream');
    expect(redactUrl('srt://h:1?passphrase=abcdefghij&mode=caller')).toBe('srt://h:1?passphrase=***&mode=caller');
    expect(classifyInput('rtsp://u:p@h/s').display).toBe('rtsp://u:***@h/s');
  });
});

describe('ffmpeg command line', () => {
  it('samples at fps on the stream clock, fits, converts to rgb24 and logs pts', () => {
    expect(buildFilterGraph(224, 224, 'letterbox', 2)).toBe(
      "select='if(isnan(t)+gte(t+0.001,ld(0))+eq(ld(1),0)+lt(t,ld(0)-1.5)," +
        "if(isnan(st(0,if(isnan(st(2,if(eq(ld(1),0)+lt(t,ld(0)-1.5),t,ld(2)))),0,ld(2)+(floor((t-ld(2)+0.001)*2)+1)/2))),1,st(1,1)))'," +
        "scale=w='min(224,max(1,round(224*dar)))':h='min(224,max(1,round(224/dar)))':flags=area,format=rgb24," +
        'pad=w=224:h=224:x=(ow-iw)/2:y=(oh-ih)/2:color=black,setsar=1,showinfo@casa',
    );
    expect(buildFilterGraph(320, 240, 'crop', 0.5)).toContain("scale=w='max(320,round(240*dar))':h='max(240,round(320/dar))'");
    expect(buildFilterGraph(320, 240, 'crop', 0.5)).toContain('crop=w=320:h=240');
    expect(buildFilterGraph(320, 240, 'fill', 2.5)).toContain('scale=w=320:h=240:flags=area,format=rgb24,setsar=1');
    expect(buildFilterGraph(320, 240, 'fill', 2.5)).toContain('*2.5)+1)/2.5');
    expect(buildFilterGraph(10, 10, 'fill', 3)).not.toMatch(/\s/);
  });

  it('sets transport and I/O timeouts per protocol', () => {
    const base = { width: 8, height: 8, fit: 'fill' as const, fps: 2, readAtNativeRate: false, rtspTransport: 'tcp' as const, ioTimeoutMs: 5000, features };
    const rtsp = buildFfmpegArgs({ ...base, input: classifyInput('rtsp://h/s') });
    expect(rtsp.inputOptions).toEqual([
      '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info',
      '-rtsp_transport', 'tcp', '-timeout', '5000000',
      '-probesize', '32768', '-analyzeduration', '500000',
    ]);
    const rtsp4 = buildFfmpegArgs({ ...base, rtspTransport: 'udp', features: { fpsMode: false, rtspTimeoutOption: '-stimeout' }, input: classifyInput('rtsp://h/s') });
    expect(rtsp4.inputOptions).toContain('-stimeout');
    expect(rtsp4.inputOptions).toContain('udp');
    expect(rtsp4.outputOptions).toContain('-vsync');
    const http = buildFfmpegArgs({ ...base, input: classifyInput('http://h/a.m3u8') });
    expect(http.inputOptions).toContain('-rw_timeout');
    const file = buildFfmpegArgs({ ...base, readAtNativeRate: true, maxOutputFrames: 5, input: classifyInput('/a.mp4') });
    expect(file.inputOptions).toEqual(['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info', '-re']);
    expect(file.outputOptions.slice(0, 5)).toEqual(['-map', '0:v:0', '-an', '-sn', '-dn']);
    expect(file.outputOptions).toEqual(expect.arrayContaining(['-fps_mode', 'passthrough', '-frames:v', '5', '-pix_fmt', 'rgb24', '-f', 'rawvideo']));
    expect(buildFfmpegArgs({ ...base, input: classifyInput('/dev/video2') }).inputOptions).toEqual(expect.arrayContaining(['-f', 'v4l2']));
  });

  it('puts the decode options before -i: hwaccel, threads (filter threads at least 1), skip_frame; none by default', () => {
    const base = { width: 8, height: 8, fit: 'fill' as const, fps: 2, readAtNativeRate: false, rtspTransport: 'tcp' as const, ioTimeoutMs: 5000, features, input: classifyInput('/a.mp4') };
    const plain = buildFfmpegArgs(base).inputOptions;
    expect(buildFfmpegArgs({ ...base, decode: {} }).inputOptions).toEqual(plain);
    expect(buildFfmpegArgs({ ...base, decode: { skipFrame: 'default' } }).inputOptions).toEqual(plain);
    expect(buildFfmpegArgs({ ...base, decode: { hwaccel: 'vaapi', threads: 1, skipFrame: 'noref', skipLoopFilter: true } }).inputOptions).toEqual([
      ...plain, '-hwaccel', 'vaapi', '-threads', '1', '-filter_threads', '1', '-skip_frame', 'noref', '-skip_loop_filter', 'all',
    ]);
    expect(buildFfmpegArgs({ ...base, decode: { skipLoopFilter: false } }).inputOptions).toEqual(plain);
    expect(buildFfmpegArgs({ ...base, decode: { threads: 0 } }).inputOptions.slice(plain.length)).toEqual(['-threads', '0', '-filter_threads', '1']);
  });

  it('refuses decode options ffmpeg would not take, naming the field', () => {
    const open = (decode: object) => () => openFrameSource({ input: '/a.mp4', width: 8, height: 8, decode: decode as never });
    expect(open({ threads: -1 })).toThrow(/decode\.threads must be a whole number from 0 to 64/);
    expect(open({ threads: 1.5 })).toThrow(UsageError);
    expect(open({ skipFrame: 'some' })).toThrow(/decode\.skipFrame must be one of default, noref, bidir, nokey/);
    expect(open({ hwaccel: 'cuda -i x' })).toThrow(/decode\.hwaccel must be an ffmpeg hwaccel name/);
    expect(open({ skipLoopFilter: 'yes' })).toThrow(/decode\.skipLoopFilter must be true or false/);
    expect(open({ nice: -1 })).toThrow(/decode\.nice must be a whole number from 0 to 19, not -1/);
    expect(open({ nice: 2.5 })).toThrow(UsageError);
  });
});

describe('stderr', () => {
  it('reads showinfo pts and the input duration', () => {
    expect(
      parseShowinfoLine('[showinfo@casa @ 0x55d] n:  12 pts:  92160 pts_time:6       duration:512 pos: 1 fmt:rgb24 sar:1/1 s:8x8'),
    ).toBe(6);
    expect(parseShowinfoLine('[showinfo@casa @ 0x55d] n:   0 pts:NOPTS pts_time:NOPTS pos: -1')).toBeNaN();
    expect(parseShowinfoLine('[showinfo@casa @ 0x55d] config in time_base: 1/15360, frame_rate: 30/1')).toBeNull();
    expect(parseShowinfoLine('[Parsed_showinfo_0 @ 0x1] n:   0 pts:      0 pts_time:0')).toBeUndefined();
    expect(parseDurationLine('  Duration: 00:01:02.50, start: 0.000000, bitrate: 100 kb/s')).toBe(62.5);
    expect(parseDurationLine('  Duration: N/A, start: 1.4, bitrate: N/A')).toBeNull();
    expect(parseDurationLine('Duration: nope')).toBeUndefined();
  });

  it('classifies ffmpeg failures', () => {
    const ctx = (input: string, lines: string[]) => ({ input: classifyInput(input), lines, exitCode: 1, signal: null, ioTimeoutMs: 5000, ffmpegPath: '/usr/bin/ffmpeg', frames: 0 });
    expect(classifyFailure(ctx('rtsp://h/s', ['[tcp @ 0x1] Connection to tcp://h:554?timeout=0 failed: Connection timed out'])).code).toBe('io-timeout');
    expect(classifyFailure(ctx('rtsps://h/s', ['https: Protocol not found'])).code).toBe('protocol-unavailable');
    expect(classifyFailure(ctx('http://h/s', ['http://h/s: Server returned 403 Forbidden (access denied)'])).code).toBe('forbidden');
    expect(classifyFailure(ctx('/dev/video7', ['[video4linux2,v4l2 @ 0x1] Cannot open video device /dev/video7: No such file or directory'])).code).toBe('device-unavailable');
    expect(classifyFailure(ctx('rtsp://h/s', ['something odd happened'])).message).toBe('ffmpeg failed on input rtsp://h/s: something odd happened.');
    expect(lastMeaningful(['[rtsp @ 0x55aa] method DESCRIBE failed: 454 Session Not Found', 'Conversion failed!'])).toBe(
      'method DESCRIBE failed: 454 Session Not Found',
    );
  });
});

describe('backoff', () => {
  it('grows exponentially to the cap, with jitter in [d/2, d]', () => {
    const lo = () => 0;
    const hi = () => 1;
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, 500, 10_000, hi))).toEqual([500, 1000, 2000, 4000, 8000, 10000, 10000]);
    expect([1, 2, 3].map((n) => backoffDelay(n, 500, 10_000, lo))).toEqual([250, 500, 1000]);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(3, 500, 10_000);
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(2000);
    }
  });

  it('never goes above the cap: any attempt, any jitter, a cap below the first delay, a fractional cap', () => {
    const settings: Array<[number, number]> = [[500, 30_000], [50, 100], [1000, 300], [0, 1000], [333, 1000.5]];
    for (const attempt of [1, 2, 5, 10, 31, 64, 1100, Number.MAX_SAFE_INTEGER]) {
      for (const r of [0, 0.5, 0.999999, 1]) {
        for (const [initial, max] of settings) {
          const d = backoffDelay(attempt, initial, max, () => r);
          expect(d, `attempt ${attempt}, random ${r}, ${initial} → ${max}`).toBeLessThanOrEqual(max);
          expect(d).toBeGreaterThanOrEqual(0);
        }
      }
    }
    expect(backoffDelay(1, 1000, 300, () => 0.999999)).toBe(300);
  });

  it('jitters within [d/2, d] of the capped delay d, over the whole range', () => {
    expect(backoffDelay(20, 500, 10_000, () => 0)).toBe(5000);
    expect(backoffDelay(20, 500, 10_000, () => 0.999999)).toBe(10_000);
    const samples = Array.from({ length: 2000 }, () => backoffDelay(2, 500, 10_000));
    for (const d of samples) {
      expect(d).toBeGreaterThanOrEqual(500);
      expect(d).toBeLessThanOrEqual(1000);
    }
    expect(Math.min(...samples)).toBeLessThan(600);
    expect(Math.max(...samples)).toBeGreaterThan(900);
  });
});

describe('retry policy', () => {
  const settings = { policy: 'always' as const, initialDelayMs: 100, maxDelayMs: 1000, maxRetries: 3 };
  const top = () => 0.999999;
  const policy = ingestRetryPolicy(settings, top);
  const failure = (kind: SourceKind, consecutive: number, code = 'connection-refused', more: Partial<AttemptFailure> = {}): AttemptFailure => ({
    code,
    kind,
    consecutive,
    wasUp: false,
    elapsedMs: 0,
    everLive: false,
    ...more,
  });
  const delay = (f: AttemptFailure): number | undefined => {
    const d = policy.decide(f);
    return d.retry ? d.delayMs : undefined;
  };

  it('retries live inputs and devices with the backoff, up to maxRetries failures in a row, then gives up saying so', () => {
    expect([1, 2, 3].map((n) => delay(failure('live', n)))).toEqual([100, 200, 400]);
    expect(delay(failure('device', 1))).toBe(100);
    expect(policy.decide(failure('live', 4))).toEqual({ retry: false, gaveUp: 'gave up after 4 failed attempts' });
    expect(delay(failure('live', 1, 'stream-dropped'))).toBe(100);
  });

  it('never retries files, stdin, an ffmpeg that cannot read the protocol, or under policy never', () => {
    expect(policy.decide(failure('file', 1))).toEqual({ retry: false });
    expect(policy.decide(failure('stdin', 1))).toEqual({ retry: false });
    expect(policy.decide(failure('live', 1, 'protocol-unavailable'))).toEqual({ retry: false });
    expect(ingestRetryPolicy({ ...settings, policy: 'never' }).decide(failure('live', 1))).toEqual({ retry: false });
    expect(delay({ ...failure('live', 1) })).toBe(100);
    expect(ingestRetryPolicy({ ...settings, policy: 'on-failure' }, top).decide(failure('live', 1))).toEqual({ retry: true, delayMs: 100 });
  });

  it('takes the fast path after an input that was up drops: 0.25 s, 0.5 s, then at most 1 s, within maxDelayMs', () => {
    const s = { policy: 'always' as const, initialDelayMs: 1000, maxDelayMs: 30_000, maxRetries: Infinity };
    const fast = (n: number, r = top) => nextRetry(s, { consecutive: n, wasUp: true }, r);
    expect([1, 2, 3, 4, 5, FAST_RETRY.retries].map((n) => fast(n))).toEqual(
      [250, 500, 1000, 1000, 1000, 1000].map((delayMs) => ({ retry: true, delayMs })),
    );
    // The first retry comes within 0.25 s whatever the jitter.
    for (const r of [0, 0.5, 1]) expect((fast(1, () => r) as { delayMs: number }).delayMs).toBeLessThanOrEqual(250);
    // After the fast retries, the normal backoff from initialDelayMs.
    expect(fast(FAST_RETRY.retries + 1)).toEqual({ retry: true, delayMs: 1000 });
    expect(fast(FAST_RETRY.retries + 3)).toEqual({ retry: true, delayMs: 4000 });
    // Never above maxDelayMs, nor below what initialDelayMs allows.
    expect(nextRetry({ ...s, maxDelayMs: 300 }, { consecutive: 5, wasUp: true }, top)).toEqual({ retry: true, delayMs: 300 });
    expect(nextRetry({ ...s, initialDelayMs: 100 }, { consecutive: 1, wasUp: true }, top)).toEqual({ retry: true, delayMs: 100 });
    // An input that never came up gets the normal backoff.
    expect(nextRetry(s, { consecutive: 1, wasUp: false }, top)).toEqual({ retry: true, delayMs: 1000 });
  });

  it('gives up when no frame came within firstFrameDeadlineMs, until the input has been live once', () => {
    const p = ingestRetryPolicy({ ...settings, maxRetries: Infinity, firstFrameDeadlineMs: 5000 }, top);
    expect(p.decide(failure('live', 2, 'connection-refused', { elapsedMs: 4000 }))).toEqual({ retry: true, delayMs: 200 });
    expect(p.decide(failure('live', 3, 'connection-refused', { elapsedMs: 4700 }))).toEqual({ retry: false, gaveUp: 'gave up: no frame within 5 s (3 attempts)' });
    expect(p.decide(failure('live', 3, 'connection-refused', { elapsedMs: 60_000, everLive: true }))).toEqual({ retry: true, delayMs: 400 });
  });

  it('words the status reason as one clean sentence', () => {
    expect(retryingReason('Live input rtsp://h/s dropped (the stream ended).', 400, 2)).toBe('Live input rtsp://h/s dropped (the stream ended); retrying in 0.4 s (retry 2)');
    expect(gaveUpReason('connection refused', 'gave up after 3 failed attempts')).toBe('connection refused; gave up after 3 failed attempts');
  });
});

describe('start queue', () => {
  it('lets at most `limit` ffmpegs start at once, in order; a release frees the slot, a release while waiting leaves the queue', async () => {
    const q = new StartQueue(2);
    const [a, b, c, d] = [q.request(), q.request(), q.request(), q.request()];
    expect(await a.granted).toBe(true);
    expect(await b.granted).toBe(true);
    expect([q.starting, q.queued]).toEqual([2, 2]);
    d.release();
    expect(await d.granted).toBe(false);
    expect(q.queued).toBe(1);
    a.release();
    a.release(); // idempotent: frees one slot only
    expect(await c.granted).toBe(true);
    expect([q.starting, q.queued]).toEqual([2, 0]);
    b.release();
    c.release();
    expect(q.starting).toBe(0);
    expect(defaultStartSlots(1)).toBe(2);
    expect(defaultStartSlots(16)).toBe(16);
  });
});

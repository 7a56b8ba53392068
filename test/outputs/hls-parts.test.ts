// The HLS output's parts on their own: the first PTS of a TS segment ffmpeg wrote (against
// ffprobe), the stream clock's attempt base (what the HLS output is offset by), playlists read
// and written, playlists carrying the token, the ffmpeg arguments of the HLS output, and the
// delivery queue's retries (same batch) and bounds.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { StreamClock } from '../../src/ingest/stream-clock.js';
import { hlsOutputArgs } from '../../src/ingest/hls-output.js';
import { silentLogger } from '../../src/logger.js';
import { withToken } from '../../src/server/pages/index.js';
import { DeliveryQueue, PermanentDeliveryError, type Batch } from '../../src/sinks/delivery.js';
import { formatMasterPlaylist, formatMediaPlaylist, parseMediaPlaylist } from '../../src/sinks/hls-playlist.js';
import { firstVideoPts } from '../../src/sinks/mpegts.js';

const run = promisify(execFile);
const dir = mkdtempSync(path.join(tmpdir(), 'casa-hls-parts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('MPEG-TS first video PTS', () => {
  it('is the segment start ffprobe reports, offset included', async () => {
    const file = path.join(dir, 'x.ts');
    await run('ffmpeg', ['-hide_banner', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=64x48:rate=10:duration=1', '-c:v', 'libx264', '-muxdelay', '0', '-output_ts_offset', '123.4', '-f', 'mpegts', file]);
    const probe = JSON.parse((await run('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', file])).stdout) as { format: { start_time: string } };
    expect(firstVideoPts(readFileSync(file))! / 90_000).toBeCloseTo(Number(probe.format.start_time), 4);
    expect(firstVideoPts(Buffer.from('not a transport stream'.repeat(20)))).toBeUndefined();
  });
});

describe('stream clock', () => {
  it("fixes an attempt's base before its first frame: 0, then the last frame plus the time away", () => {
    const clock = new StreamClock(2);
    const first = clock.forAttempt(1000);
    expect(first.base).toBe(0);
    expect(first(0, 1000).ptsSeconds).toBe(0);
    expect(first(0.5, 1500).ptsSeconds).toBe(0.5);
    const second = clock.forAttempt(4500); // 3 s after the last frame
    expect(second.base).toBe(3.5);
    expect(second(0, 6000).ptsSeconds).toBe(3.5); // its frames: base + their own pts
    expect(second(0.5, 6500).ptsSeconds).toBe(4);
  });
});

describe('playlists', () => {
  const video = '#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXTINF:1.000000,\nv7.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:0.960000,\nv8.ts\n';

  it('reads a media playlist and writes one back', () => {
    const p = parseMediaPlaylist(video)!;
    expect(p).toEqual({
      version: 6,
      targetDuration: 1,
      mediaSequence: 7,
      ended: false,
      segments: [
        { sequence: 7, duration: 1, uri: 'v7.ts', discontinuity: false },
        { sequence: 8, duration: 0.96, uri: 'v8.ts', discontinuity: true },
      ],
    });
    expect(parseMediaPlaylist(formatMediaPlaylist({ ...p, ended: true }))).toEqual({ ...p, ended: true });
  });

  it('names the subtitle group in the master playlist', () => {
    expect(formatMasterPlaylist({ bandwidth: 500_000, language: 'en', name: 'Captions' })).toBe(
      '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n' +
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="Captions",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,FORCED=NO,URI="subs.m3u8"\n' +
        '#EXT-X-STREAM-INF:BANDWIDTH=500000,SUBTITLES="subs"\nvideo.m3u8\n',
    );
  });

  it('carry the token to every file they name', () => {
    const master = formatMasterPlaylist({ bandwidth: 1, language: 'en', name: 'C' });
    expect(withToken(master, 'a b')).toContain('URI="subs.m3u8?token=a%20b"');
    expect(withToken(master, 'a b')).toContain('\nvideo.m3u8?token=a%20b\n');
    expect(withToken(video, 't').split('\n').filter((l) => l.endsWith('.ts?token=t'))).toEqual(['v7.ts?token=t', 'v8.ts?token=t']);
  });
});

describe('the HLS output of ffmpeg', () => {
  it('is offset by the attempt base, adds no mux delay, cuts a keyframe per segment', () => {
    const { target, options } = hlsOutputArgs({ dir: '/data/hls/50%', segmentSeconds: 2, listSize: 6, height: 480, preset: 'veryfast' }, 3.5, { fpsMode: true, rtspTimeoutOption: '-timeout' });
    expect(target).toBe('/data/hls/50%/video.m3u8');
    const opt = (name: string): string | undefined => options[options.indexOf(name) + 1];
    expect(opt('-output_ts_offset')).toBe('3.500000');
    expect(opt('-muxdelay')).toBe('0');
    expect(opt('-force_key_frames')).toBe('expr:gte(t,n_forced*2)');
    expect(opt('-hls_time')).toBe('2');
    expect(opt('-hls_segment_filename')).toBe('/data/hls/50%%/v%d.ts');
    expect(opt('-vf')).toBe("scale=w=-2:h='min(480,trunc(ih/2)*2)',format=yuv420p");
  });
});

describe('delivery queue', () => {
  it('retries the same batch until it goes through, drops a refused one, never blocks the caller', async () => {
    const tries: Array<[number, number, string[]]> = [];
    const q = new DeliveryQueue<string>({
      capacity: 3,
      maxBatch: 10,
      backoff: { initialDelayMs: 10, maxDelayMs: 20 },
      logger: silentLogger(),
      deliver: async (b: Batch<string>) => {
        tries.push([b.number, b.attempt, [...b.items]]);
        if (b.items.includes('refused')) throw new PermanentDeliveryError('403');
        if (b.number === 1 && b.attempt < 3) throw new Error('503');
      },
    });
    q.push('a');
    for (const x of ['b', 'c', 'd', 'e']) q.push(x); // queued while batch 1 retries; capacity 3: 'b' dropped
    await new Promise((r) => setTimeout(r, 200));
    q.push('refused');
    await q.close(1000);
    expect(tries).toEqual([
      [1, 1, ['a']],
      [1, 2, ['a']],
      [1, 3, ['a']],
      [2, 1, ['c', 'd', 'e']],
      [3, 1, ['refused']],
    ]);
    expect(q.delivered).toBe(4);
    expect(q.dropped).toBe(2);
    expect(q.current).toBe('closed');
  });
});

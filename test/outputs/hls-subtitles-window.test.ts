// The WebVTT rendition's window (src/sinks/hls-subtitles.ts) on real MPEG-TS segments from
// ffmpeg: as the video playlist slides, every WebVTT segment subs.m3u8 lists is on disk (a
// player that fetched the playlist never gets a 404), and the ones that left the window are
// deleted once neither the current nor the previous subs.m3u8 lists them.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HLS_DEFAULTS } from '../../src/config/schema.js';
import { silentLogger } from '../../src/logger.js';
import { formatMediaPlaylist, parseMediaPlaylist } from '../../src/sinks/hls-playlist.js';
import { HlsSubtitleSink } from '../../src/sinks/hls-subtitles.js';
import { ffmpeg } from '../cli/helpers.js';
import { until } from '../server/helpers.js';
import { tempDir } from '../cluster/helpers.js';

const tmp = tempDir('casa-hls-window-');
const SEGMENTS = 10;
const WINDOW = 3;
let source: string;

beforeAll(async () => {
  source = path.join(tmp.dir, 'source');
  mkdirSync(source);
  await ffmpeg(['-f', 'lavfi', '-i', `testsrc2=size=64x64:rate=10:duration=${SEGMENTS}`, '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10', '-f', 'hls', '-hls_time', '1', '-hls_list_size', '0', '-hls_segment_filename', path.join(source, 'v%d.ts'), path.join(source, 'all.m3u8')]);
}, 60_000);

afterAll(() => tmp.cleanup());

describe('HLS subtitles: the window slides', () => {
  it('every WebVTT segment subs.m3u8 lists exists; those out of the window are deleted one rewrite later', async () => {
    const all = parseMediaPlaylist(readFileSync(path.join(source, 'all.m3u8'), 'utf8'))!;
    expect(all.segments.length).toBeGreaterThanOrEqual(SEGMENTS - 1);
    const dir = path.join(tmp.dir, 'hls');
    const sink = new HlsSubtitleSink({ stream: 'cam', dir, hls: { ...HLS_DEFAULTS, enabled: true }, logger: silentLogger(), pollMs: 20, graceMs: 300 });
    const subs = path.join(dir, 'subs.m3u8');
    let checks = 0;
    try {
      for (let end = 1; end <= all.segments.length; end++) {
        const window = all.segments.slice(Math.max(0, end - WINDOW), end);
        for (const s of window) if (!existsSync(path.join(dir, s.uri))) copyFileSync(path.join(source, s.uri), path.join(dir, s.uri));
        const video = { ...all, mediaSequence: window[0]!.sequence, segments: window, ended: false };
        writeFileSync(path.join(dir, 'video.m3u8'), formatMediaPlaylist({ version: 3, targetDuration: all.targetDuration, mediaSequence: video.mediaSequence, segments: window, ended: false }));
        const last = window.at(-1)!.sequence;
        // Until the new segment's subtitles are due (graceMs: no captions come here), subs.m3u8
        // still lists the previous window: what it lists must stay on disk meanwhile.
        await until(() => {
          if (!existsSync(subs)) return false;
          const text = readFileSync(subs, 'utf8');
          for (const s of parseMediaPlaylist(text)!.segments) expect(existsSync(path.join(dir, s.uri)), `${s.uri} listed in subs.m3u8`).toBe(true);
          checks++;
          return text.includes(`sub${last}.vtt`);
        }, 10_000, `subs.m3u8 to list sub${last}.vtt`);
      }
      // The window holds WINDOW segments; one more (the previous playlist's first) may remain.
      const vtts = readdirSync(dir).filter((f) => f.endsWith('.vtt'));
      expect(vtts.length).toBeLessThanOrEqual(WINDOW + 1);
      expect(checks).toBeGreaterThan(0);
    } finally {
      await sink.close();
    }
  }, 60_000);
});

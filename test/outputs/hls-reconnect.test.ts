// The HLS output across a reconnect of its stream, on a real RTSP server taken down and brought
// back: the ingest's retry loop (TCP refusal checks while the server is away, then a start slot
// and a new ffmpeg) fixes the new attempt's place on the stream clock when that ffmpeg is
// spawned, and the video it writes is offset by it. So the segments after the discontinuity
// start where the new attempt's frames do, after the outage, and the frames stay increasing.
// The test holds the process's only start slot for a while after the server is back: the time
// the new attempt waits for it counts in the gap on the clock, as the wall clock says.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../../src/ingest/index.js';
import { parseMediaPlaylist } from '../../src/sinks/hls-playlist.js';
import { firstVideoPts, MPEGTS_HZ } from '../../src/sinks/mpegts.js';
import { freePort, makeClip, sleep, tempDir, waitFor, x264Args } from '../ingest/helpers/media.js';
import { RtspServer } from '../ingest/helpers/rtsp-server.js';
import { consume, increasing, OpenedSources } from '../ingest/helpers/sources.js';
import { ffmpegStarts } from '../../src/ingest/start-queue.js';

const tmp = tempDir('casa-hls-reconnect-');
const sources = new OpenedSources();
let clip: string;
let server: RtspServer | undefined;

beforeAll(async () => {
  clip = path.join(tmp.dir, 'live.mp4');
  // Short GOP so that ffmpeg joining mid-stream decodes at once.
  await makeClip(clip, { size: '320x240', rate: 25, seconds: 4, codecArgs: x264Args(10) });
});
const slots = ffmpegStarts.limit;
afterEach(async () => {
  ffmpegStarts.setLimit(slots);
  await sources.stopAll();
  await server?.stop();
});
afterAll(() => tmp.cleanup());

/** The first frame after a gap of more than `gapSeconds` on the stream clock: the new attempt's first. */
function firstAfterGap(frames: Frame[], gapSeconds: number): number {
  return frames.findIndex((f, i) => i > 0 && f.ptsSeconds - frames[i - 1]!.ptsSeconds > gapSeconds);
}

describe('the HLS output across a reconnect', () => {
  it('continues on the stream clock: the segments after the discontinuity start at the new attempt\'s first frame', async () => {
    server = new RtspServer(await freePort(), clip);
    await server.start();
    const dir = path.join(tmp.dir, 'hls');
    const source = sources.open({
      input: server.url,
      width: 64,
      height: 64,
      fps: 4,
      hls: { dir, segmentSeconds: 1, listSize: 60, height: 0, preset: 'ultrafast' },
      reconnect: { initialDelayMs: 200, maxDelayMs: 500 },
    });
    const reading = consume(source);
    await waitFor(() => reading.frames.length >= 8, 30_000, 'frames of the first connection');

    await server.stop();
    ffmpegStarts.setLimit(1);
    const hold = ffmpegStarts.request();
    expect(await hold.granted).toBe(true);
    const outageMs = 3000;
    await sleep(outageMs);
    await server.start();
    await sleep(2000); // the retries wait for the slot
    const releasedAt = Date.now();
    hold.release();
    await waitFor(() => {
      const at = firstAfterGap(reading.frames, 2);
      return at > 0 && reading.frames.length - at >= 16;
    }, 60_000, 'four seconds of frames after the reconnect');
    await source.stop();

    const frames = reading.frames;
    expect(increasing(frames)).toBe(true);
    const at = firstAfterGap(frames, 2);
    const resumed = frames[at]!;
    // The new attempt's base counts the time away up to its ffmpeg's spawn, after the wait for the slot.
    const last = frames[at - 1]!;
    expect(resumed.ptsSeconds - last.ptsSeconds).toBeGreaterThanOrEqual((releasedAt - last.receivedAt) / 1000 - 0.01);

    const playlist = parseMediaPlaylist(readFileSync(path.join(dir, 'video.m3u8'), 'utf8'))!;
    // (ffmpeg marks the playlist's first segment too.)
    const cut = playlist.segments.findIndex((s, i) => i > 0 && s.discontinuity);
    expect(cut, 'a discontinuity where the stream reconnected').toBeGreaterThan(0);
    const startOf = (uri: string): number => firstVideoPts(readFileSync(path.join(dir, uri)))! / MPEGTS_HZ;
    const before = playlist.segments[cut - 1]!;
    const after = playlist.segments[cut]!;
    // The video before the outage ends before the gap; after it, it starts with the new attempt's frames.
    expect(startOf(before.uri) + before.duration).toBeLessThanOrEqual(resumed.ptsSeconds);
    expect(Math.abs(startOf(after.uri) - resumed.ptsSeconds)).toBeLessThan(0.5);
    // Both sides of the outage are on the same clock as the captions' frames.
    expect(Math.abs(startOf(playlist.segments[0]!.uri) - frames[0]!.ptsSeconds)).toBeLessThan(0.5);
  });
});

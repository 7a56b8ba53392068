/**
 * The WebVTT rendition of a stream's HLS (config `streams[].hls`, docs/outputs.md). The
 * stream's ffmpeg writes the video (video.m3u8 and MPEG-TS segments, src/ingest) into
 * <dataDir>/hls/<stream>/, with timestamps equal to the stream's own clock (the frames' pts,
 * so the captions' start and end). This sink watches that playlist and, for each video
 * segment, writes a WebVTT segment covering the same time span (same sequence number, same
 * duration) with an X-TIMESTAMP-MAP that ties the cue times to the segment's first MPEG-TS
 * timestamp; subs.m3u8 mirrors the video playlist, and master.m3u8 names both (SUBTITLES
 * group), so Safari, hls.js, VLC and ffmpeg show the captions.
 *
 * A segment's subtitles are written once the captions have passed its end (captions come in
 * frame order), or after `graceMs` when they do not come. Cues are cut at segment boundaries,
 * so a cue longer than a segment is repeated, piece by piece, in the next one. A pipeline
 * restart starts the stream's clock again (captions and video go back to 0): each such period
 * of the video is matched with the period of captions that began at the same wall-clock time.
 * When the stream ends for good (the sink is closed after its ffmpeg has exited), the last
 * subtitles are written and both media playlists are closed with EXT-X-ENDLIST: what is left
 * is a complete recording of the last minute that any player, ffmpeg 5 included, reads whole.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { HlsConfig } from '../config/schema.js';
import type { CaptionEvent, StreamEvent } from '../events.js';
import type { Logger } from '../logger.js';
import { HLS_FILES, vttSegmentName as vttName, formatMasterPlaylist, formatMediaPlaylist, formatVttSegment, parseMediaPlaylist, type MediaPlaylist, type MediaSegment } from './hls-playlist.js';
import { MPEGTS_HZ, PTS_WRAP, firstVideoPts } from './mpegts.js';
import type { EventSink } from './outputs.js';
import type { Cue, CueSegmenter } from './segmenter.js';
import { createSegmenter } from './subtitles.js';

export interface HlsSubtitleSinkOptions {
  stream: string;
  /** The stream's HLS directory: <dataDir>/hls/<stream>. */
  dir: string;
  hls: HlsConfig;
  logger: Logger;
  /** How often the video playlist is read (default 250 ms). */
  pollMs?: number;
  /** Longest wait for a video segment's captions (default: 2 s + 2 segments). */
  graceMs?: number;
  /** Language of the captions (default "en"). */
  language?: string;
}

/** Captions of one run of the stream's clock (a pipeline's life). */
interface CaptionPeriod {
  /** Wall-clock ms when its first frame arrived. */
  wallStart: number;
  segmenter: CueSegmenter;
  cues: Cue[];
  lastStart: number;
  lastEnd: number;
  ended: boolean;
}

interface VideoSegment extends MediaSegment {
  /** Stream time (s) of its first frame. */
  start: number;
  /** Its first PTS as written in the file (90 kHz, wrapped). */
  mpegts: number;
  /** Index of its clock period. */
  period: number;
  seenAt: number;
  bytes: number;
  written: boolean;
}

/** How close (ms) a caption period's start must be to a video period's to be its captions. */
const PERIOD_MATCH_MS = 10_000;

export class HlsSubtitleSink implements EventSink {
  readonly name: string;
  private readonly captions: CaptionPeriod[] = [];
  private readonly segments: VideoSegment[] = [];
  /** Wall-clock start of each video period. */
  private readonly videoPeriods: number[] = [];
  private lastRawPts: number | undefined;
  private wrap = 0;
  private playlist: MediaPlaylist | undefined;
  private lastPlaylistText = '';
  private masterWritten = false;
  /** subs.m3u8 has been written. */
  private subtitlesListed = false;
  private readonly timer: NodeJS.Timeout;
  private busy = false;
  private closed = false;
  private readonly graceMs: number;
  /** Sequences of WebVTT segments that left the video playlist, not deleted yet. */
  private retired: number[] = [];
  /** The first sequence subs.m3u8 listed when it was last written. */
  private previousFirst = 0;

  constructor(private readonly o: HlsSubtitleSinkOptions) {
    this.name = `hls-subtitles:${o.stream}`;
    this.graceMs = o.graceMs ?? 2000 + 2000 * o.hls.segmentSeconds;
    // A fresh directory: the playlists of an earlier run must not be served or continued.
    mkdirSync(o.dir, { recursive: true });
    for (const f of readdirSync(o.dir)) rmSync(path.join(o.dir, f), { force: true, recursive: true });
    this.timer = setInterval(() => void this.poll(), o.pollMs ?? 250);
  }

  push(ev: StreamEvent): void {
    if (ev.type !== 'caption' || ev.stream !== this.o.stream) return;
    let period = this.captions.at(-1);
    // The clock went back: the pipeline restarted.
    if (!period || ev.start < period.lastStart - 1) period = this.newCaptionPeriod(ev, period);
    period.cues.push(...period.segmenter.push(ev));
    period.lastStart = ev.start;
    period.lastEnd = ev.end;
  }

  /** The stream ended: its last subtitles, then both playlists closed (EXT-X-ENDLIST). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 20));
    try {
      await this.readVideoPlaylist();
      const last = this.captions.at(-1);
      if (last && !last.ended) {
        last.cues.push(...last.segmenter.flush(last.lastEnd));
        last.ended = true;
      }
      for (const seg of this.segments) if (!seg.written) await this.writeSegment(seg);
      if (!this.playlist) return;
      await this.writeSubtitlePlaylist(this.playlist, true);
      if (!this.masterWritten && this.subtitlesListed) await this.writeMaster();
      await writeAtomic(path.join(this.o.dir, HLS_FILES.video), formatMediaPlaylist({ ...this.playlist, ended: true }));
    } catch (err) {
      this.o.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'hls subtitles: could not close the playlists');
    }
  }

  private newCaptionPeriod(ev: CaptionEvent, previous: CaptionPeriod | undefined): CaptionPeriod {
    if (previous) {
      previous.cues.push(...previous.segmenter.flush(previous.lastEnd));
      previous.ended = true;
    }
    const period: CaptionPeriod = {
      wallStart: Date.now() - Math.max(0, ev.latencyMs || 0) - ev.start * 1000,
      segmenter: createSegmenter(this.o.hls.subtitleStyle, { maxLineChars: this.o.hls.lineLength }),
      cues: [],
      lastStart: ev.start,
      lastEnd: ev.end,
      ended: false,
    };
    this.captions.push(period);
    if (this.captions.length > 8) this.captions.shift();
    return period;
  }

  /** Reads the video playlist; learns new segments; writes the subtitles that are due. */
  private async poll(): Promise<void> {
    if (this.busy || this.closed) return;
    this.busy = true;
    try {
      await this.readVideoPlaylist();
      if (!this.playlist) return;
      let wrote = false;
      for (const seg of this.segments) if (!seg.written && this.due(seg)) wrote = (await this.writeSegment(seg)) || wrote;
      if (wrote) await this.writeSubtitlePlaylist(this.playlist);
      // The master names subs.m3u8: it is written once that playlist exists (a player reading
      // the master never asks for a playlist that is not there yet).
      if (!this.masterWritten && this.subtitlesListed) await this.writeMaster();
    } catch (err) {
      this.o.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'hls subtitles: update failed');
    } finally {
      this.busy = false;
    }
  }

  private async readVideoPlaylist(): Promise<void> {
    const text = await readFile(path.join(this.o.dir, HLS_FILES.video), 'utf8').catch(() => undefined);
    if (text === undefined || text === this.lastPlaylistText) return;
    const p = parseMediaPlaylist(text);
    if (!p) return;
    this.playlist = p;
    const known = this.segments.at(-1)?.sequence ?? -1;
    for (const s of p.segments) {
      // A segment not readable yet is tried again at the next poll (and those after it too).
      if (s.sequence > known && !(await this.learn(s))) return;
    }
    this.lastPlaylistText = text;
    const first = p.segments[0]?.sequence ?? 0;
    const old = this.segments.filter((s) => s.sequence < first);
    this.segments.splice(0, old.length);
    // Deleted only once subs.m3u8 has stopped listing them (writeSubtitlePlaylist).
    this.retired.push(...old.map((s) => s.sequence));
  }

  /** A new video segment: its first timestamp gives its place on the stream's clock. */
  private async learn(s: MediaSegment): Promise<boolean> {
    const file = path.join(this.o.dir, s.uri);
    const head = await readHead(file, 64 * 1024);
    const raw = head && firstVideoPts(head);
    if (raw === undefined) return false;
    if (this.lastRawPts !== undefined && raw < this.lastRawPts) {
      // Backwards by more than half the range: the 33-bit clock wrapped; else a new clock period.
      if (this.lastRawPts - raw > PTS_WRAP / 2) this.wrap += PTS_WRAP;
      else this.newVideoPeriod(s);
    }
    if (this.videoPeriods.length === 0) this.newVideoPeriod(s);
    this.lastRawPts = raw;
    const bytes = (await stat(file).catch(() => undefined))?.size ?? 0;
    this.segments.push({ ...s, start: (raw + this.wrap) / MPEGTS_HZ, mpegts: raw, period: this.videoPeriods.length - 1, seenAt: Date.now(), bytes, written: false });
    return true;
  }

  private newVideoPeriod(first: MediaSegment): void {
    this.wrap = 0;
    this.videoPeriods.push(Date.now() - first.duration * 1000);
  }

  /** The caption period that began when the segment's video period did (the only one, while there is one of each). */
  private captionsOf(seg: VideoSegment): CaptionPeriod | undefined {
    if (this.videoPeriods.length === 1 && this.captions.length === 1) return this.captions[0];
    const wall = this.videoPeriods[seg.period]!;
    const gap = (c: CaptionPeriod): number => Math.abs(c.wallStart - wall);
    let best: CaptionPeriod | undefined;
    for (const c of this.captions) if (gap(c) < PERIOD_MATCH_MS && (!best || gap(c) < gap(best))) best = c;
    return best;
  }

  /** Its captions are all known (they passed its end), or waiting longer is pointless. */
  private due(seg: VideoSegment): boolean {
    const c = this.captionsOf(seg);
    const end = seg.start + seg.duration;
    return (c !== undefined && (c.ended || c.lastStart >= end - 1e-3)) || Date.now() - seg.seenAt >= this.graceMs;
  }

  private async writeSegment(seg: VideoSegment): Promise<boolean> {
    const c = this.captionsOf(seg);
    const cues = c ? cuesWithin(c, seg.start, seg.start + seg.duration) : [];
    await writeAtomic(path.join(this.o.dir, vttName(seg.sequence)), formatVttSegment({ mpegts: seg.mpegts, local: seg.start }, cues));
    seg.written = true;
    return true;
  }

  /** The subtitle playlist: the video playlist's window, as far as its subtitles are written. */
  private async writeSubtitlePlaylist(video: MediaPlaylist, ended = false): Promise<void> {
    const listed: MediaSegment[] = [];
    for (const v of video.segments) {
      const seg = this.segments.find((s) => s.sequence === v.sequence);
      if (!seg?.written) break;
      listed.push({ ...v, uri: vttName(v.sequence) });
    }
    if (listed.length === 0) return;
    const text = formatMediaPlaylist({ version: 3, targetDuration: video.targetDuration, mediaSequence: video.mediaSequence, segments: listed, ended });
    await writeAtomic(path.join(this.o.dir, HLS_FILES.subtitles), text);
    this.subtitlesListed = true;
    await this.removeRetired(this.previousFirst);
    this.previousFirst = (listed[0] as MediaSegment).sequence;
  }

  /**
   * Deletes the WebVTT segments that left the window before `before`: the subtitle playlist
   * written before this one did not list them either, so a player holding either playlist
   * never asks for them (deleted as soon as they left the video playlist, they were still
   * listed in subs.m3u8 until its next rewrite, and a player asking for them got a 404).
   */
  private async removeRetired(before: number): Promise<void> {
    const gone = this.retired.filter((seq) => seq < before);
    if (gone.length === 0) return;
    this.retired = this.retired.filter((seq) => seq >= before);
    await Promise.all(gone.map((seq) => rm(path.join(this.o.dir, vttName(seq)), { force: true })));
  }

  private async writeMaster(): Promise<void> {
    const peak = Math.max(...this.segments.map((s) => (s.bytes * 8) / Math.max(0.1, s.duration)));
    const bandwidth = Math.max(200_000, Math.round(peak * 1.5));
    await writeAtomic(path.join(this.o.dir, HLS_FILES.master), formatMasterPlaylist({ bandwidth, language: this.o.language ?? 'en', name: 'Captions' }));
    this.masterWritten = true;
  }
}

/** The period's cues (final ones, then the one on screen) cut to [from, to). */
function cuesWithin(c: CaptionPeriod, from: number, to: number): Cue[] {
  const out: Cue[] = [];
  const add = (start: number, end: number, lines: string[]): void => {
    const s = Math.max(start, from);
    const e = Math.min(end, to);
    if (e - s >= 0.001) out.push({ index: out.length + 1, start: s, end: e, lines });
  };
  for (const cue of c.cues) add(cue.start, cue.end, cue.lines);
  const now = c.ended ? undefined : c.segmenter.showing;
  if (now) add(now.start, now.until ?? to, now.lines);
  // Keep the final cues that may still matter (those ending after this segment's start).
  const keepFrom = c.cues.findIndex((cue) => cue.end > from - 60);
  if (keepFrom > 0) c.cues.splice(0, keepFrom);
  return out;
}

async function readHead(file: string, bytes: number): Promise<Buffer | undefined> {
  const fh = await open(file, 'r').catch(() => undefined);
  if (!fh) return undefined;
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Readers (the daemon serving the file, players) never see half a file. */
async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

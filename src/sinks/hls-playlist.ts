/**
 * HLS playlists (RFC 8216) as far as casa-live reads and writes them: the live media playlist
 * ffmpeg writes for the video (read), the WebVTT media playlist that mirrors it and the master
 * playlist that ties both together (written), and the WebVTT segment with its
 * X-TIMESTAMP-MAP. Pure functions.
 */
import { HLS_VIDEO_PLAYLIST } from '../ingest/hls-output.js';
import type { Cue } from './segmenter.js';
import { formatVttCue } from './subtitles.js';
import { vttTime } from './timecode.js';

export interface MediaSegment {
  /** Media sequence number. */
  sequence: number;
  /** EXTINF, seconds. */
  duration: number;
  uri: string;
  /** An EXT-X-DISCONTINUITY precedes it. */
  discontinuity: boolean;
}

export interface MediaPlaylist {
  version: number;
  targetDuration: number;
  mediaSequence: number;
  segments: MediaSegment[];
  ended: boolean;
}

/** The file names in the stream's HLS directory. */
export const HLS_FILES = { master: 'master.m3u8', video: HLS_VIDEO_PLAYLIST, subtitles: 'subs.m3u8' } as const;
/** The subtitle segments: sub<sequence>.vtt. */
export const vttSegmentName = (sequence: number): string => `sub${sequence}.vtt`;
export const VTT_SEGMENT = /^sub\d+\.vtt$/;

export function parseMediaPlaylist(text: string): MediaPlaylist | undefined {
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  if (lines[0] !== '#EXTM3U') return undefined;
  const p: MediaPlaylist = { version: 3, targetDuration: 0, mediaSequence: 0, segments: [], ended: false };
  let duration: number | undefined;
  let discontinuity = false;
  for (const line of lines.slice(1)) {
    const [tag, value = ''] = splitTag(line);
    if (tag === '#EXT-X-VERSION') p.version = Number(value);
    else if (tag === '#EXT-X-TARGETDURATION') p.targetDuration = Number(value);
    else if (tag === '#EXT-X-MEDIA-SEQUENCE') p.mediaSequence = Number(value);
    else if (tag === '#EXT-X-ENDLIST') p.ended = true;
    else if (tag === '#EXT-X-DISCONTINUITY') discontinuity = true;
    else if (tag === '#EXTINF') duration = Number(value.split(',')[0]);
    else if (line !== '' && !line.startsWith('#') && duration !== undefined) {
      p.segments.push({ sequence: p.mediaSequence + p.segments.length, duration, uri: line, discontinuity });
      duration = undefined;
      discontinuity = false;
    }
  }
  return p;
}

function splitTag(line: string): [string, string?] {
  const i = line.indexOf(':');
  return i < 0 ? [line] : [line.slice(0, i), line.slice(i + 1)];
}

/** A media playlist of `segments`, in order; `ended` closes it (EXT-X-ENDLIST). */
export function formatMediaPlaylist(p: Omit<MediaPlaylist, 'ended'> & { ended?: boolean }): string {
  const out = ['#EXTM3U', `#EXT-X-VERSION:${p.version}`, `#EXT-X-TARGETDURATION:${p.targetDuration}`, `#EXT-X-MEDIA-SEQUENCE:${p.mediaSequence}`];
  for (const s of p.segments) {
    if (s.discontinuity) out.push('#EXT-X-DISCONTINUITY');
    out.push(`#EXTINF:${s.duration.toFixed(6)},`, s.uri);
  }
  if (p.ended) out.push('#EXT-X-ENDLIST');
  return out.join('\n') + '\n';
}

export interface MasterPlaylistOptions {
  /** Peak bits per second of the video (EXT-X-STREAM-INF BANDWIDTH). */
  bandwidth: number;
  /** `1280x720`, when known. */
  resolution?: string;
  /** BCP 47 language of the captions. */
  language: string;
  name: string;
}

/** The master playlist: one video variant whose SUBTITLES group is the WebVTT rendition. */
export function formatMasterPlaylist(o: MasterPlaylistOptions): string {
  const media = [
    'TYPE=SUBTITLES',
    'GROUP-ID="subs"',
    `NAME="${o.name.replace(/"/g, "'")}"`,
    `LANGUAGE="${o.language}"`,
    'DEFAULT=YES',
    'AUTOSELECT=YES',
    'FORCED=NO',
    `URI="${HLS_FILES.subtitles}"`,
  ];
  const variant = [`BANDWIDTH=${Math.max(1, Math.round(o.bandwidth))}`, ...(o.resolution ? [`RESOLUTION=${o.resolution}`] : []), 'SUBTITLES="subs"'];
  return ['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-INDEPENDENT-SEGMENTS', `#EXT-X-MEDIA:${media.join(',')}`, `#EXT-X-STREAM-INF:${variant.join(',')}`, HLS_FILES.video, ''].join(
    '\n',
  );
}

/**
 * One WebVTT segment: its X-TIMESTAMP-MAP says that cue time `local` (seconds) is the video's
 * MPEG-TS timestamp `mpegts` (90 kHz ticks): players place the cues on the video's timeline.
 * Cues have no identifier: hls.js takes one as the cue's identity across segments (it would
 * drop every segment's "1" after the first), and without one it tells cues apart by time and text.
 */
export function formatVttSegment(map: { mpegts: number; local: number }, cues: readonly Cue[]): string {
  return `WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:${Math.round(map.mpegts)},LOCAL:${vttTime(map.local)}\n\n${cues.map((c) => formatVttCue(c, false)).join('')}`;
}

/**
 * SRT and WebVTT files written while the stream runs.
 *
 * The file is valid at every moment: it is created at once (WebVTT with its header), and
 * each cue is appended with one synchronous write of the whole cue block as soon as the
 * segmenter declares it final. `close()` writes the cues still held (the cue in progress),
 * syncs and closes the file; it is synchronous, so a signal handler can call it.
 */
import { SUBTITLE_STYLES, type SubtitleStyle } from '../config/schema.js';
import type { CaptionEvent } from '../events.js';
import { RollingSegmenter } from './rolling.js';
import { SubtitleSegmenter, type Cue, type CueSegmenter, type SegmenterOptions } from './segmenter.js';
import { SyncFile } from './sync-file.js';
import { srtTime, vttTime } from './timecode.js';

export type SubtitleFormat = 'srt' | 'vtt';

/** How cues are cut: `block` (readable groups, a clean screen between them) or `rolling` (two lines flowing, contiguous cues). */
export { SUBTITLE_STYLES, type SubtitleStyle };

export function createSegmenter(style: SubtitleStyle, options: SegmenterOptions = {}): CueSegmenter {
  return style === 'rolling' ? new RollingSegmenter(options) : new SubtitleSegmenter(options);
}

/** Text of one SubRip cue block (with its trailing blank line). */
export function formatSrtCue(cue: Cue): string {
  const lines = cue.lines.map(srtText);
  return `${cue.index}\n${srtTime(cue.start)} --> ${srtTime(cue.end)}\n${lines.join('\n')}\n\n`;
}

/**
 * Text of one WebVTT cue block (with its trailing blank line). `withId: false` leaves out the
 * cue identifier (HLS segments: players take an identifier as the cue's identity across segments).
 */
export function formatVttCue(cue: Cue, withId = true): string {
  const lines = cue.lines.map(vttText);
  return `${withId ? `${cue.index}\n` : ''}${vttTime(cue.start)} --> ${vttTime(cue.end)}\n${lines.join('\n')}\n\n`;
}

export const VTT_HEADER = 'WEBVTT\n\n';

/** SubRip has no escaping; keep the arrow and libass override braces out of the text. */
function srtText(line: string): string {
  return line.replace(/-->/g, '->').replace(/[{}]/g, (c) => (c === '{' ? '(' : ')'));
}

/** WebVTT: &, < and > are markup; "-->" may not appear in cue text. */
function vttText(line: string): string {
  return line.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/-->/g, '--&gt;');
}

/** Builds a whole subtitle file from cues (tests, burn-in of a finished run). */
export function formatSubtitles(format: SubtitleFormat, cues: Cue[]): string {
  const body = cues.map((c) => (format === 'srt' ? formatSrtCue(c) : formatVttCue(c))).join('');
  return format === 'vtt' ? VTT_HEADER + body : body;
}

export class SubtitleFileWriter {
  readonly path: string;
  readonly format: SubtitleFormat;
  private readonly segmenter: CueSegmenter;
  private readonly file: SyncFile;
  private _cues = 0;

  constructor(path: string, format: SubtitleFormat, options: SegmenterOptions = {}, style: SubtitleStyle = 'block') {
    this.path = path;
    this.format = format;
    this.segmenter = createSegmenter(style, options);
    this.file = new SyncFile(path);
    if (format === 'vtt') this.file.write(VTT_HEADER);
  }

  /** Cues written so far. */
  get cues(): number {
    return this._cues;
  }

  caption(ev: Pick<CaptionEvent, 'start' | 'end' | 'text'>): void {
    this.write(this.segmenter.push({ start: ev.start, end: ev.end, text: ev.text }));
  }

  /** Writes what is still held (the last cue ends by `streamEnd` when given), syncs and closes. Idempotent. */
  close(streamEnd?: number): void {
    if (!this.file.isOpen) return;
    this.write(this.segmenter.flush(streamEnd));
    this.file.close();
  }

  private write(cues: Cue[]): void {
    if (cues.length === 0) return;
    if (this.file.write(cues.map((c) => (this.format === 'srt' ? formatSrtCue(c) : formatVttCue(c))).join(''))) this._cues += cues.length;
  }
}

/**
 * SRT and WebVTT files written while the stream runs.
 *
 * The file is valid at every moment: it is created at once (WebVTT with its header), and
 * each cue is appended with one synchronous write of the whole cue block as soon as the
 * segmenter declares it final. `close()` writes the cues still held (the cue in progress),
 * syncs and closes the file; it is synchronous, so a signal handler can call it.
 */
import type { CaptionEvent } from '../events.js';
import { SubtitleSegmenter, type Cue, type SegmenterOptions } from './segmenter.js';
import { SyncFile } from './sync-file.js';
import { srtTime, vttTime } from './timecode.js';

export type SubtitleFormat = 'srt' | 'vtt';

/** Text of one SubRip cue block (with its trailing blank line). */
export function formatSrtCue(cue: Cue): string {
  const lines = cue.lines.map(srtText);
  return `${cue.index}\n${srtTime(cue.start)} --> ${srtTime(cue.end)}\n${lines.join('\n')}\n\n`;
}

/** Text of one WebVTT cue block (with its trailing blank line). */
export function formatVttCue(cue: Cue): string {
  const lines = cue.lines.map(vttText);
  return `${cue.index}\n${vttTime(cue.start)} --> ${vttTime(cue.end)}\n${lines.join('\n')}\n\n`;
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
  const body = cues.map(format === 'srt' ? formatSrtCue : formatVttCue).join('');
  return format === 'vtt' ? VTT_HEADER + body : body;
}

export class SubtitleFileWriter {
  readonly path: string;
  readonly format: SubtitleFormat;
  private readonly segmenter: SubtitleSegmenter;
  private readonly file: SyncFile;
  private _cues = 0;

  constructor(path: string, format: SubtitleFormat, options: SegmenterOptions = {}) {
    this.path = path;
    this.format = format;
    this.segmenter = new SubtitleSegmenter(options);
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
    if (this.file.write(cues.map(this.format === 'srt' ? formatSrtCue : formatVttCue).join(''))) this._cues += cues.length;
  }
}

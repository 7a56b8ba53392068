/**
 * Rolling captions (`--subtitle-style rolling`, config `subtitles.style: rolling`): the text
 * flows through a window of `maxLines` lines (default 2) of at most `maxLineChars`
 * characters; when the last line is full a new one starts and the oldest scrolls away. Each
 * frame's text appears at its frame's time and stays until the next frame that says
 * something (cues are contiguous; silent frames change nothing), as Kyutai's progressive
 * subtitles do. The same line rule (`rollText`) serves the overlay and watch pages.
 */
import { normalise, rollText, roundMs, segmenterOptions, separator, type Cue, type CueSegmenter, type OnScreenText, type SegmenterOptions, type SubtitlePiece } from './segmenter.js';

interface OnScreen {
  start: number;
  lines: string[];
}

export class RollingSegmenter implements CueSegmenter {
  readonly maxLineChars: number;
  readonly maxLines: number;
  readonly minDurationSeconds: number;
  /** The window's lines after the last piece (what the next piece is added to). */
  private lines: string[] = [];
  /** The last piece's text, raw and normalised (for the separator rule). */
  private lastText = '';
  /** The cue on screen now: it ends where the next piece appears. */
  private open: OnScreen | undefined;
  private lastEnd = 0;
  private nextIndex = 1;
  private lastEmittedEnd = 0;

  constructor(options: SegmenterOptions = {}) {
    ({ maxLineChars: this.maxLineChars, maxLines: this.maxLines, minDurationSeconds: this.minDurationSeconds } = segmenterOptions(options));
  }

  /** Adds one frame's text; returns the cue that it ends (the one on screen until now). */
  push(piece: SubtitlePiece): Cue[] {
    const text = normalise(piece.text);
    this.lastEnd = Math.max(this.lastEnd, piece.end);
    if (text === '') return [];
    const joiner = this.lastText === '' ? ' ' : separator(this.lastText, piece.text, text);
    this.lines = rollText(this.lines, text, joiner, this.maxLineChars, this.maxLines);
    this.lastText = text;
    const out: Cue[] = [];
    if (this.open && piece.start > this.open.start) this.emit(this.open, piece.start, out);
    // A piece at the same time as the one on screen replaces it (nothing was shown in between).
    this.open = { start: this.open && piece.start <= this.open.start ? this.open.start : piece.start, lines: this.lines };
    return out;
  }

  /** Ends the stream: the cue on screen lasts to the end of the last frame (at least minDurationSeconds, never past `streamEnd`). */
  flush(streamEnd?: number): Cue[] {
    const out: Cue[] = [];
    const o = this.open;
    if (o) {
      const wanted = Math.max(this.lastEnd, o.start + this.minDurationSeconds);
      this.emit(o, streamEnd !== undefined ? Math.min(wanted, Math.max(this.lastEnd, streamEnd)) : wanted, out);
      this.open = undefined;
    }
    return out;
  }

  /** The text on screen now, if any (for live display). */
  get current(): { start: number; lines: string[] } | undefined {
    return this.open;
  }

  get showing(): OnScreenText | undefined {
    return this.open;
  }

  private emit(c: OnScreen, end: number, out: Cue[]): void {
    // Millisecond resolution: each cue starts where the previous one ended (contiguous).
    const start = Math.max(roundMs(c.start), this.lastEmittedEnd);
    const e = roundMs(Math.max(roundMs(end), start + 0.001));
    this.lastEmittedEnd = e;
    out.push({ index: this.nextIndex++, start, end: e, lines: c.lines });
  }
}

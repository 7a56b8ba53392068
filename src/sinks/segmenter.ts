/**
 * Subtitle segmentation (docs/cli.md, "Subtitle files"): turns per-frame captions into
 * readable cues, incrementally, so that SRT/WebVTT files can be written while the stream runs.
 *
 * Following the reference script's idea:
 * - each frame's text is shown from the time its frame was generated (the frame's pts),
 *   never earlier;
 * - silent frames (empty text) show nothing: they never make a cue, and they end the group
 *   of pieces before them;
 * - consecutive pieces (frames back to back) are merged into readable lines, roll-up style:
 *   the piece of the next frame is added to the text on screen (a new cue from that frame's
 *   time carries the text so far), as long as the group still fits in `maxLines` lines of at
 *   most `maxLineChars` characters. A piece starts a new line when it does not fit on the
 *   current one; a piece that does not fit in the cue starts a new group on a clean screen;
 * - the last cue of a group stays on screen at least `minDurationSeconds` (for reading), but
 *   never past the start of the next cue, so cue times always increase and never overlap.
 */
export interface SegmenterOptions {
  /** Longest line, in characters (default 42, the usual broadcast limit). */
  maxLineChars?: number;
  /** Lines per cue (default 2). */
  maxLines?: number;
  /** Shortest time a cue is shown, when nothing follows it at once (default 1 s). */
  minDurationSeconds?: number;
}

/** One frame's committed text. */
export interface SubtitlePiece {
  start: number;
  end: number;
  text: string;
}

export interface Cue {
  /** 1, 2, 3, … in the order cues are emitted. */
  index: number;
  start: number;
  end: number;
  lines: string[];
}

/** What turns frame pieces into cues: the block segmenter below, or the rolling one (rolling.ts). */
export interface CueSegmenter {
  /** Adds one frame's text; returns the cues that are final now. */
  push(piece: SubtitlePiece): Cue[];
  /** Ends the stream: returns every remaining cue. */
  flush(streamEnd?: number): Cue[];
  /** The text on screen whose cue is not final yet: from `start`, until `until` at the latest when known. */
  readonly showing: OnScreenText | undefined;
}

export interface OnScreenText {
  start: number;
  lines: string[];
  until?: number;
}

export const SEGMENTER_DEFAULTS = { maxLineChars: 42, maxLines: 2, minDurationSeconds: 1 } as const;

/** The options with their defaults; RangeError for a value out of range. */
export function segmenterOptions(options: SegmenterOptions): Required<SegmenterOptions> {
  const o = { ...SEGMENTER_DEFAULTS, ...options };
  if (!(Number.isInteger(o.maxLineChars) && o.maxLineChars >= 8)) {
    throw new RangeError(`maxLineChars must be a whole number of at least 8, not ${o.maxLineChars}`);
  }
  if (!(Number.isInteger(o.maxLines) && o.maxLines >= 1)) {
    throw new RangeError(`maxLines must be a whole number of at least 1, not ${o.maxLines}`);
  }
  if (!(o.minDurationSeconds >= 0)) throw new RangeError('minDurationSeconds must be 0 or more');
  return o;
}

/** Two pieces are consecutive when the second starts within this of the first's end. */
const TOLERANCE_S = 0.02;

interface OpenCue {
  /** When the text now on screen appeared (the latest piece's start). */
  start: number;
  /** End of the latest piece. */
  lastEnd: number;
  /** Text of the group so far (for joining). */
  text: string;
  lines: string[];
}

export class SubtitleSegmenter implements CueSegmenter {
  readonly maxLineChars: number;
  readonly maxLines: number;
  readonly minDurationSeconds: number;
  private open: OpenCue | undefined;
  /** The last cue of a closed group; its end is not known yet (it may linger). */
  private pending: OpenCue | undefined;
  private nextIndex = 1;
  private lastEmittedEnd = 0;

  constructor(options: SegmenterOptions = {}) {
    ({ maxLineChars: this.maxLineChars, maxLines: this.maxLines, minDurationSeconds: this.minDurationSeconds } = segmenterOptions(options));
  }

  /** Adds one frame's text; returns the cues that are final now. */
  push(piece: SubtitlePiece): Cue[] {
    const out: Cue[] = [];
    const text = normalise(piece.text);
    if (text === '') {
      // A silent frame ends the group in progress (its last cue may still linger).
      this.closeOpen();
      this.settle(piece.start, out);
      return out;
    }
    const open = this.open;
    if (open && piece.start <= open.lastEnd + TOLERANCE_S) {
      const sep = separator(open.text, piece.text, text);
      const lines = addPiece(open.lines, sep, text, this.maxLineChars);
      if (lines.length <= this.maxLines) {
        // Roll up: what was on screen ends where this frame's text appears.
        if (piece.start > open.start) {
          this.emit(open, piece.start, out);
          open.start = piece.start;
        }
        open.text = joinText(open.text, sep, text);
        open.lines = lines;
        open.lastEnd = Math.max(open.lastEnd, piece.end);
        return out;
      }
    }
    this.closeOpen();
    this.open = { start: piece.start, lastEnd: Math.max(piece.end, piece.start), text, lines: wrap(text, this.maxLineChars) };
    this.settle(piece.start, out);
    return out;
  }

  /**
   * Ends the stream: returns every remaining cue. `streamEnd` (the end of the last frame)
   * keeps the last cue from lingering past the end of the video.
   */
  flush(streamEnd?: number): Cue[] {
    const out: Cue[] = [];
    this.closeOpen();
    const p = this.pending;
    if (p) {
      const wanted = Math.max(p.lastEnd, p.start + this.minDurationSeconds);
      const end = streamEnd !== undefined ? Math.min(wanted, Math.max(p.lastEnd, streamEnd)) : wanted;
      this.pending = undefined;
      this.emit(p, end, out);
    }
    return out;
  }

  /** The text on screen now, if any (for live display). */
  get current(): { start: number; lines: string[] } | undefined {
    return this.open ? { start: this.open.start, lines: this.open.lines } : undefined;
  }

  get showing(): OnScreenText | undefined {
    if (this.open) return { start: this.open.start, lines: this.open.lines };
    const p = this.pending;
    return p && { start: p.start, lines: p.lines, until: Math.max(p.lastEnd, p.start + this.minDurationSeconds) };
  }

  // Invariant: a pending cue exists only while no group is open (opening one settles it).
  private closeOpen(): void {
    if (!this.open) return;
    this.pending = this.open;
    this.open = undefined;
  }

  /** Emits the pending cue once its end is known: the next cue started, or `now` is past its linger. */
  private settle(now: number, out: Cue[]): void {
    const p = this.pending;
    if (!p) return;
    const wanted = Math.max(p.lastEnd, p.start + this.minDurationSeconds);
    let end: number;
    if (this.open) end = Math.min(wanted, this.open.start);
    else if (now >= wanted) end = wanted;
    else return; // may still linger
    this.pending = undefined;
    this.emit(p, end, out);
  }

  private emit(c: OpenCue, end: number, out: Cue[]): void {
    // Millisecond resolution in the files: keep start < end and starts increasing.
    const start = Math.max(roundMs(c.start), this.lastEmittedEnd);
    const e = roundMs(Math.max(roundMs(end), start + 0.001));
    this.lastEmittedEnd = e;
    out.push({ index: this.nextIndex++, start, end: e, lines: c.lines });
  }
}

export function roundMs(t: number): number {
  return Math.round(t * 1000) / 1000;
}

/** Collapses whitespace and control characters; trims. */
export function normalise(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f\s]+/g, ' ').trim();
}

/**
 * How the next piece joins the text so far: a piece that starts with a space continues the
 * sentence (running commentary); after punctuation a space is enough; otherwise pieces are
 * separate statements and get a comma (a capitalised one, a full stop).
 */
export function separator(prev: string, rawNext: string, next: string): string {
  if (/^[.,;:!?…)]/.test(next)) return '';
  if (/^\s/.test(rawNext) || /[.,;:!?…\-–—]$/.test(prev)) return ' ';
  return /^\p{Lu}/u.test(next) ? '. ' : ', ';
}

function joinText(prev: string, sep: string, next: string): string {
  return prev + sep + next;
}

/**
 * Lines after adding a piece: on the current line when it fits there whole, else from a new
 * line (the separator's punctuation stays at the end of the previous line).
 */
function addPiece(lines: string[], sep: string, piece: string, width: number): string[] {
  const last = lines[lines.length - 1] ?? '';
  const joined = last + sep + piece;
  if (joined.length <= width) return [...lines.slice(0, -1), joined];
  const head = (last + sep).trimEnd();
  if (head.length > width) return wrap(lines.join(' ') + sep + piece, width); // the punctuation would overflow: plain wrap
  return [...lines.slice(0, -1), head, ...wrap(piece, width)];
}

/** Greedy word wrap; a word longer than the line is cut. */
export function wrap(text: string, width: number): string[] {
  return rollText([], text, ' ', width, Infinity);
}

/**
 * The line rule of every caption display (subtitle files, rolling cues, the overlay and watch
 * pages): `text`'s words are added to the last of `lines`, a word that does not fit starts a
 * new line, a word longer than a line is cut, and only the last `maxLines` lines are kept.
 * `joiner` is how the text joins what is on screen: '' continues the last word (a token
 * inside a word), ' ' a new word, ', ' or '. ' (from `separator`) a new piece, whose
 * punctuation stays on the previous line when it fits there.
 *
 * Self-contained on purpose (no imports, no helpers, plain JavaScript once compiled): the
 * pages served by the daemon embed its source, so browsers roll lines by this same rule.
 */
export function rollText(lines: readonly string[], text: string, joiner: string, width: number, maxLines: number): string[] {
  const out = lines.slice();
  const words = text.split(' ').filter((w) => w !== '');
  let line = out.length > 0 ? (out.pop() as string) : '';
  if (words.length > 0 && line !== '') {
    if (joiner === '') {
      const cut = line.lastIndexOf(' ');
      words[0] = line.slice(cut + 1) + words[0];
      line = cut < 0 ? '' : line.slice(0, cut);
    } else {
      const mark = joiner.trim();
      if (mark !== '' && line.length + mark.length <= width) line += mark;
    }
  }
  for (let word of words) {
    while (word.length > width) {
      if (line !== '') out.push(line);
      line = '';
      out.push(word.slice(0, width));
      word = word.slice(width);
    }
    if (line === '') line = word;
    else if (line.length + 1 + word.length <= width) line += ' ' + word;
    else {
      out.push(line);
      line = word;
    }
  }
  if (line !== '') out.push(line);
  return out.length > maxLines ? out.slice(out.length - maxLines) : out;
}

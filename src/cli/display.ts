/**
 * What `casa-live caption` shows while it runs.
 *
 * - tty: captions appear token by token after their time stamp; below them a status line
 *   (files: a progress bar with frames done / total, frames per second and the real-time
 *   factor; live inputs: frames, rate, lag and drops). The two bottom lines are redrawn in
 *   place with ANSI cursor controls; committed captions scroll above them.
 * - plain (not a terminal): one plain line per frame, "[00:00:01.500] text", no control codes;
 *   state changes and the summary go to stderr.
 * - off: nothing but errors (--quiet, or --jsonl - on a non-terminal).
 */
import type { CaptionEvent, StatusEvent, TokenEvent } from '../events.js';
import { clockTime } from '../sinks/timecode.js';

export type DisplayMode = 'tty' | 'plain' | 'off';

export interface DisplayOptions {
  mode: DisplayMode;
  /** Where captions (and in tty mode, the status line) go. */
  out: NodeJS.WritableStream & { columns?: number };
  /** Where plain-mode state changes and the summary go. */
  err: NodeJS.WritableStream;
  color?: boolean;
  /** Minimum milliseconds between status-line redraws (default 100). */
  redrawMs?: number;
}

export interface ProgressInfo {
  /** Frames captioned. */
  frames: number;
  /** Frames expected in all (files), when known. */
  total?: number;
  elapsedMs: number;
  /** Stream seconds captioned (end of the last frame). */
  streamSeconds: number;
  dropped: number;
  lagMs: number;
  live: boolean;
  /** A live input that is reconnecting: for how long it has been away. */
  outageMs?: number;
}

const ESC = '\x1b[';

export class CaptionDisplay {
  private _mode: DisplayMode;
  private readonly out: DisplayOptions['out'];
  private readonly err: NodeJS.WritableStream;
  private readonly color: boolean;
  private readonly redrawMs: number;
  private partialFrame: number | undefined;
  private partialPts = 0;
  private partialText = '';
  private bar = '';
  private regionLines = 0;
  private lastDraw = 0;
  private closed = false;
  /** Since when the input has been away (a `reconnecting` not yet followed by `live`). */
  private outageSince: number | undefined;

  constructor(opts: DisplayOptions) {
    this._mode = opts.mode;
    this.out = opts.out;
    this.err = opts.err;
    this.color = opts.color ?? false;
    this.redrawMs = opts.redrawMs ?? 100;
  }

  get mode(): DisplayMode {
    return this._mode;
  }

  /** Stops all output (the reader of stdout went away). */
  mute(): void {
    this._mode = 'off';
    this.closed = true;
  }

  private dim(s: string): string {
    return this.color ? `${ESC}2m${s}${ESC}0m` : s;
  }

  private bold(s: string): string {
    return this.color ? `${ESC}1m${s}${ESC}0m` : s;
  }

  private get columns(): number {
    const c = this.out.columns;
    return typeof c === 'number' && c > 20 ? c : 80;
  }

  /** A line for the terminal only (what is being captioned); nothing off a terminal. */
  note(line: string): void {
    if (this.mode === 'tty') this.printAbove(this.dim(line));
  }

  /** A line of information (stopping, warnings): above the live region / on stderr. */
  info(line: string): void {
    if (this.mode === 'tty') this.printAbove(this.dim(line));
    else if (this.mode === 'plain') this.err.write(`${line}\n`);
  }

  token(ev: Pick<TokenEvent, 'frame' | 'pts' | 'text'>): void {
    if (this.mode !== 'tty') return;
    if (this.partialFrame !== ev.frame) {
      this.partialFrame = ev.frame;
      this.partialPts = ev.pts;
      this.partialText = '';
    }
    this.partialText += ev.text;
    this.redraw(true);
  }

  caption(ev: Pick<CaptionEvent, 'frame' | 'start' | 'text'>): void {
    if (this.mode === 'plain') {
      const text = oneLine(ev.text);
      this.out.write(text === '' ? `[${clockTime(ev.start)}]\n` : `[${clockTime(ev.start)}] ${text}\n`);
      return;
    }
    if (this.mode !== 'tty') return;
    this.partialFrame = undefined;
    this.partialText = '';
    const text = oneLine(ev.text);
    // Silent frames print nothing on a terminal: the progress line shows that time goes on.
    if (text === '') this.redraw(true);
    else this.printAbove(`${this.dim(clockTime(ev.start))}  ${text}`);
  }

  /**
   * State changes worth a line: the start of an outage (its later retries show in the
   * progress line, "reconnecting… 12 s"), its end, and frame-drop reports. connecting / live /
   * ended are visible from the captions and the progress line; a fatal error ends the command,
   * which prints it once.
   */
  status(ev: Pick<StatusEvent, 'state' | 'reason' | 'droppedFrames'>): void {
    const startsOutage = ev.state === 'reconnecting' && this.outageSince === undefined;
    const outageMs = ev.state === 'live' && this.outageSince !== undefined ? Date.now() - this.outageSince : undefined;
    this.outageSince = ev.state === 'reconnecting' ? (this.outageSince ?? Date.now()) : undefined;
    if (this.mode === 'off') return;
    let line: string | undefined;
    if (startsOutage) line = `reconnecting: ${ev.reason ?? 'input lost'}`;
    else if (outageMs !== undefined) line = `live again after ${formatOutage(outageMs)}`;
    else if (ev.state === 'live' && ev.reason !== undefined) line = `live: ${ev.reason}`;
    if (line === undefined) return;
    if (this.mode === 'tty') this.printAbove(this.color ? `${ESC}33m${line}${ESC}0m` : line);
    else this.err.write(`casa-live: ${line}\n`);
  }

  progress(p: ProgressInfo): void {
    if (this.mode !== 'tty') return;
    const outage = this.outageSince !== undefined ? { outageMs: Date.now() - this.outageSince } : {};
    this.bar = this.formatProgress({ ...p, ...outage });
    this.redraw(false);
  }

  /** Replaces the status line with free text (e.g. the burn-in's progress). */
  statusLine(text: string): void {
    if (this.mode !== 'tty') return;
    this.bar = text;
    this.redraw(false);
  }

  formatProgress(p: ProgressInfo): string {
    const secs = p.elapsedMs / 1000;
    const rate = secs > 0 ? p.frames / secs : 0;
    const rtf = secs > 0 ? p.streamSeconds / secs : 0;
    const parts: string[] = [];
    if (p.live) {
      const state = p.outageMs !== undefined ? `reconnecting… ${formatOutage(p.outageMs)}` : 'live';
      parts.push(`${this.bold(state)}  ${p.frames} frames`, `${rate.toFixed(1)} fps`, `lag ${(p.lagMs / 1000).toFixed(1)} s`, `${p.dropped} dropped`);
      return parts.join('  ');
    }
    const total = p.total;
    if (total !== undefined && total > 0) {
      const width = Math.max(10, Math.min(30, this.columns - 60));
      const frac = Math.min(1, p.frames / total);
      const full = Math.round(frac * width);
      parts.push(`${'█'.repeat(full)}${'░'.repeat(width - full)} ${p.frames}/${total} frames`);
    } else {
      parts.push(`${p.frames} frames`);
    }
    parts.push(`${rate.toFixed(1)} fps`, `${rtf.toFixed(1)}× real time`);
    if (p.dropped > 0) parts.push(`${p.dropped} dropped`);
    if (total !== undefined && rate > 0 && p.frames < total) parts.push(`eta ${formatDuration((total - p.frames) / rate)}`);
    return parts.join('  ');
  }

  /** Clears the live region (before the summary, an error or exit). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.mode === 'tty') {
      this.clearRegion();
      this.partialText = '';
      this.bar = '';
    }
  }

  /** Writes final lines (summary, score): stdout region on a terminal, stderr otherwise. */
  summary(line: string): void {
    if (this.mode === 'tty') {
      this.clearRegion();
      this.out.write(`${line}\n`);
      this.redraw(true);
    } else if (this.mode === 'plain') {
      this.err.write(`${line}\n`);
    }
  }

  // ------------------------------------------------------------------ tty region

  private printAbove(line: string): void {
    this.clearRegion();
    this.out.write(`${line}\n`);
    this.redraw(true);
  }

  private clearRegion(): void {
    if (this.regionLines === 0) return;
    let s = '\r';
    for (let i = 1; i < this.regionLines; i++) s += `${ESC}1A`;
    s += `${ESC}J`;
    this.out.write(s);
    this.regionLines = 0;
  }

  private redraw(force: boolean): void {
    if (this.closed) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < this.redrawMs) return;
    this.lastDraw = now;
    const lines: string[] = [];
    const max = this.columns - 1;
    if (this.partialFrame !== undefined) {
      const stamp = clockTime(this.partialPts);
      let text = oneLine(this.partialText);
      const room = max - stamp.length - 2;
      if (text.length > room) text = `…${text.slice(text.length - room + 1)}`;
      lines.push(`${this.dim(stamp)}  ${text}`);
    }
    if (this.bar) lines.push(truncate(this.bar, max));
    this.clearRegion();
    if (lines.length === 0) return;
    this.out.write(lines.join('\n'));
    this.regionLines = lines.length;
  }
}

function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
}

function truncate(s: string, max: number): string {
  // Count visible characters only (the bar may carry colour codes).
  // eslint-disable-next-line no-control-regex
  const visible = s.replace(/\x1b\[[0-9;]*m/g, '');
  if (visible.length <= max) return s;
  return `${visible.slice(0, max - 1)}…`;
}

/** "3 s", "59 s", then "1:05". */
function formatOutage(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s} s` : formatDuration(s);
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor(s / 60) % 60;
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

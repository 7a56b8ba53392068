/**
 * YouTube Live closed captions over HTTP (Google's "Closed Captions over HTTP for YouTube Live
 * Streams", support.google.com/youtube/answer/6077032): each POST goes to the stream's caption
 * ingestion URL (a secret: it authorises the post) with `&seq=N` added, N increasing by one
 * per POST of new caption data and kept the same when a POST is retried. The body, text/plain,
 * is one or more captions, each a line with the UTC time `YYYY-MM-DDTHH:MM:SS.mmm` (optionally
 * followed by ` region:reg1#cue1`) and a line with the caption text (UTF-8, `<br>` for a line
 * break), every line ending with a newline.
 *
 * A caption's time is when its frame reached casa-live (commit time − latencyMs) plus
 * `clockOffsetMs` (to account for the delay between this machine and the video YouTube
 * receives, or a skewed clock), never earlier than the previous caption's. Network errors, 5xx
 * and 429 answers are retried with backoff; another 4xx drops the batch (a wrong or expired
 * URL) with a warning.
 */
import type { CaptionEvent, StreamEvent } from '../events.js';
import type { Logger } from '../logger.js';
import { DeliveryQueue, PermanentDeliveryError, type Batch } from './delivery.js';
import type { EventSink } from './outputs.js';

export interface YouTubeSinkOptions {
  /** The stream whose captions are sent. */
  stream: string;
  /** The caption ingestion URL (http or https, as YouTube gives it). */
  url: string;
  /** Added to every caption time, in milliseconds (may be negative). */
  clockOffsetMs?: number;
  /** `reg1#cue1`-style region and cue, written as ` region:<value>` after the time. */
  region?: string;
  /** At most one POST per this many ms (captions waiting meanwhile go in one POST); default 1000. */
  minIntervalMs?: number;
  /** Per-request timeout, ms (default 10 000). */
  timeoutMs?: number;
  /** The first seq (default 1). */
  firstSeq?: number;
  logger: Logger;
  /** Clock (tests). */
  now?: () => number;
}

interface TimedCaption {
  /** ms since the epoch, offset applied, monotonic. */
  at: number;
  text: string;
}

const BACKOFF = { initialDelayMs: 1000, maxDelayMs: 30_000 };

/** `2012-12-24T00:00:06.873`: UTC, milliseconds, no zone suffix. */
export function youtubeTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 23);
}

/** One caption's two lines: the time (and region) and the text (one line; `<br>` for breaks). */
export function youtubeCaptionLines(at: number, text: string, region?: string): string {
  const body = text.replace(/\r\n|\r|\n/g, '<br>');
  return `${youtubeTime(at)}${region ? ` region:${region}` : ''}\n${body}\n`;
}

/** The ingestion URL with `seq=N` set (replacing any seq already in it). */
export function withSeq(url: string, seq: number): string {
  const u = new URL(url);
  u.searchParams.set('seq', String(seq));
  return u.toString();
}

export class YouTubeCaptionSink implements EventSink {
  readonly name: string;
  private readonly queue: DeliveryQueue<TimedCaption>;
  private readonly now: () => number;
  private lastAt = 0;
  private readonly firstSeq: number;

  constructor(private readonly options: YouTubeSinkOptions) {
    this.name = `youtube:${options.stream}`;
    this.now = options.now ?? Date.now;
    this.firstSeq = options.firstSeq ?? 1;
    const u = new URL(options.url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RangeError('the YouTube caption URL must be http(s)');
    this.queue = new DeliveryQueue<TimedCaption>({
      capacity: 1000,
      maxBatch: 50,
      deliver: (batch) => this.post(batch),
      backoff: BACKOFF,
      minIntervalMs: options.minIntervalMs ?? 1000,
      logger: options.logger,
    });
  }

  get delivery(): DeliveryQueue<TimedCaption> {
    return this.queue;
  }

  push(ev: StreamEvent): void {
    if (ev.type !== 'caption' || ev.stream !== this.options.stream) return;
    const text = ev.text.trim();
    if (text === '') return;
    this.queue.push({ at: this.captionTime(ev), text });
  }

  close(): Promise<void> {
    return this.queue.close(3000);
  }

  /** When the caption's frame arrived, offset, and never before the previous caption. */
  private captionTime(ev: CaptionEvent): number {
    const latency = Number.isFinite(ev.latencyMs) ? Math.max(0, ev.latencyMs) : 0;
    const at = Math.max(Math.round(this.now() - latency + (this.options.clockOffsetMs ?? 0)), this.lastAt + 1);
    this.lastAt = at;
    return at;
  }

  private async post(batch: Batch<TimedCaption>): Promise<void> {
    const seq = this.firstSeq + batch.number - 1;
    const body = batch.items.map((c) => youtubeCaptionLines(c.at, c.text, this.options.region)).join('');
    let res: Response;
    try {
      res = await fetch(withSeq(this.options.url, seq), {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain; charset=utf-8' },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
    } catch (err) {
      throw new Error(`POST seq ${seq}: ${err instanceof Error ? err.message : String(err)}`);
    }
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return;
    const what = `POST seq ${seq}: HTTP ${res.status}`;
    if (res.status >= 500 || res.status === 429 || res.status === 408) throw new Error(what);
    throw new PermanentDeliveryError(what);
  }
}

/**
 * Caption events (DESIGN §6). The WebSocket feed, the durable caption log and the CLI's
 * JSONL output all share this schema. Times are seconds; `seq` increases monotonically
 * per stream across token, caption and status events.
 */
export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'ended' | 'error';

/** Stream ids appear in URLs, file names and metric labels: the one rule for them. */
export const STREAM_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export const STREAM_ID_RULE = '1-64 characters of A-Z a-z 0-9 _ - starting with a letter or digit';

export interface TokenEvent {
  type: 'token';
  stream: string;
  seq: number;
  frame: number;
  pts: number;
  text: string;
}

export interface CaptionEvent {
  type: 'caption';
  stream: string;
  seq: number;
  frame: number;
  /** Stream time (s) of the frame this caption was generated for. */
  start: number;
  /** Stream time (s) at which the next frame arrives (start + 1/fps). */
  end: number;
  text: string;
  /** Frame received → caption committed, in milliseconds. */
  latencyMs: number;
}

export interface StatusEvent {
  type: 'status';
  stream: string;
  seq: number;
  state: StreamState;
  reason?: string;
  /** How far the caption session is behind the newest frame, in milliseconds. */
  lagMs: number;
  droppedFrames: number;
}

export type StreamEvent = TokenEvent | CaptionEvent | StatusEvent;

/** A stream event before the stream's sequencer stamped it with `stream` and `seq`. */
export type UnsequencedEvent =
  | Omit<TokenEvent, 'stream' | 'seq'>
  | Omit<CaptionEvent, 'stream' | 'seq'>
  | Omit<StatusEvent, 'stream' | 'seq'>;

/**
 * Stamps an event with its stream id and seq (the one place that does it: the daemon's
 * sequencer and the CLI's JSONL output). Key order type, stream, seq, …: readable lines.
 */
export function stampEvent(ev: UnsequencedEvent, stream: string, seq: number): StreamEvent {
  return Object.assign({ type: ev.type, stream, seq }, ev, { stream, seq }) as StreamEvent;
}

export interface HelloEvent {
  type: 'hello';
  version: string;
  streams: string[];
  model: string;
  fps: number;
  /** How many recent events per stream the server can replay on resume. */
  resumeWindow: number;
  /** Cluster mode: the node this connection is on. */
  node?: string;
  /** Cluster mode: stream id → the node that captions it (null: none now). */
  owners?: Record<string, string | null>;
}

export interface ErrorEvent {
  type: 'error';
  reason: string;
  /** The client request that was refused, when it could be parsed. */
  request?: unknown;
}

export type ServerEvent = StreamEvent | HelloEvent | ErrorEvent;

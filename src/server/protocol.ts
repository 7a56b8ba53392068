/**
 * The WebSocket protocol of `casa-live serve` (docs/protocol.md): client messages, the two
 * server messages that are not stream events (`subscribed`, `pong`), and close codes.
 * Stream events, `hello` and `error` are the DESIGN §6 schema in src/events.ts.
 */
import { z } from 'zod';
import type { ServerEvent, StreamState } from '../events.js';
import { STREAM_ID_RE } from '../events.js';

export const WS_PATH = '/v1/ws';
/** Accepted as an alias of WS_PATH. */
export const WS_PATH_ALIAS = '/ws';

export const CLOSE_CODES = {
  /** Server shutting down or restarting: reconnect with backoff and resume. */
  GOING_AWAY: 1001,
  /** Too many malformed messages or messages too fast: fix the client before reconnecting. */
  POLICY_VIOLATION: 1008,
  /** A message larger than limits.maxPayloadBytes (sent by the ws library). */
  MESSAGE_TOO_BIG: 1009,
  /** The client fell behind past limits.clientBufferBytes: reconnect and resume from the last seq received. */
  RESUME_REQUIRED: 4008,
} as const;

export const RESUME_REQUIRED_REASON = 'slow consumer: resume from your last seq';

const streamId = z.string().regex(STREAM_ID_RE, 'not a valid stream id');

export const subscribeSchema = z.strictObject({
  type: z.literal('subscribe'),
  streams: z.array(streamId).min(1).max(1000),
  /** stream id → last seq the client received; the server sends everything after it. */
  resume: z.record(streamId, z.int().min(0)).optional(),
  /** For streams not in `resume`: how many recent captions to send first (default 0). */
  backfill: z.int().min(0).max(100).optional(),
});

export const unsubscribeSchema = z.strictObject({
  type: z.literal('unsubscribe'),
  streams: z.array(streamId).min(1).max(1000),
});

export const pingSchema = z.strictObject({
  type: z.literal('ping'),
  id: z.union([z.string().max(64), z.number()]).optional(),
});

export const clientMessageSchema = z.discriminatedUnion('type', [subscribeSchema, unsubscribeSchema, pingSchema]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;
export type SubscribeMessage = z.infer<typeof subscribeSchema>;

/** Acknowledges a subscribe, before the replayed events. */
export interface SubscribedMessage {
  type: 'subscribed';
  streams: Array<{
    stream: string;
    /** Current state; 'idle' until the stream's pipeline reported one. */
    state: StreamState | 'idle' | 'disabled';
    /** The stream's latest seq at the time of the subscribe. */
    lastSeq: number;
    /** How many events are replayed next for this stream. */
    replay: number;
  }>;
}

export interface UnsubscribedMessage {
  type: 'unsubscribed';
  streams: string[];
}

export interface PongMessage {
  type: 'pong';
  id?: string | number;
  /** Server time, seconds since the epoch. */
  time: number;
}

export type ServerMessage = ServerEvent | SubscribedMessage | UnsubscribedMessage | PongMessage;

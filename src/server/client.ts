/**
 * One WebSocket client of the feed, and its backpressure. Every send is non-blocking: while
 * the socket's unsent data stays under the soft limit a message is written at once; past it
 * messages wait here, token events coalesced (merged per frame, dropped once the frame's
 * caption is queued), captions and status kept. Past the hard limit (what waits here plus
 * the socket's buffer) the client is closed with 4008 ("resume from your last seq").
 */
import { WebSocket } from 'ws';
import type { TokenEvent } from '../events.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { CLOSE_CODES, RESUME_REQUIRED_REASON, type ServerMessage } from './protocol.js';

/** Messages a client may send per second before it is closed. */
export const MAX_MESSAGES_PER_SECOND = 50;

/** What a Client uses of its socket (the ws WebSocket). */
export type ClientSocket = Pick<WebSocket, 'readyState' | 'bufferedAmount' | 'send' | 'close' | 'terminate' | 'ping' | 'once'>;

export interface ClientLimits {
  /** Unsent bytes past which messages wait (and tokens coalesce). */
  clientSoftBufferBytes: number;
  /** Waiting plus unsent bytes past which the client is closed with 4008. */
  clientBufferBytes: number;
}

export interface ClientDeps {
  /** Read at every send, so a reload's new limits apply to the next message. */
  limits: () => ClientLimits;
  metrics: Pick<Metrics, 'wsMessagesSent' | 'wsTokensCoalesced' | 'wsSlowCloses'>;
  logger: Logger;
  /** How long a client closed for being slow may take to read its close frame. */
  slowCloseGraceMs: number;
  /** Called once, when the client starts closing: drop its subscriptions. */
  onClosing: (client: Client) => void;
}

interface Pending {
  msg: ServerMessage;
  data: string;
}

let nextClientId = 1;

export class Client {
  readonly id = nextClientId++;
  readonly subs = new Set<string>();
  private pending: Pending[] = [];
  private pendingBytes = 0;
  alive = true;
  closing = false;
  errors = 0;
  private windowStart = Date.now();
  private windowCount = 0;
  readonly connectedAt = Date.now();

  constructor(
    readonly ws: ClientSocket,
    readonly remote: string,
    private readonly deps: ClientDeps,
  ) {}

  /** Bytes waiting: ours (coalescable) plus the socket's. */
  get buffered(): number {
    return this.pendingBytes + this.ws.bufferedAmount;
  }

  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  send(msg: ServerMessage, data: string = JSON.stringify(msg)): void {
    if (this.closing || this.ws.readyState !== WebSocket.OPEN) return;
    if (this.pending.length === 0 && this.ws.bufferedAmount < this.deps.limits().clientSoftBufferBytes) {
      this.write(data);
      return;
    }
    // Slow path: this client is behind. Coalesce tokens; captions and status are kept.
    if (msg.type === 'token' && this.mergeToken(msg)) return;
    if (msg.type === 'caption') this.dropTokensOf(msg.stream, msg.frame);
    this.pending.push({ msg, data });
    this.pendingBytes += data.length;
    this.checkHardLimit();
  }

  /** Merges a token into the last queued token of its stream when it is of the same frame. */
  private mergeToken(msg: TokenEvent): boolean {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const p = this.pending[i]!;
      if (!('stream' in p.msg) || p.msg.stream !== msg.stream) continue;
      if (p.msg.type !== 'token' || p.msg.frame !== msg.frame) return false;
      const merged: TokenEvent = { ...p.msg, seq: msg.seq, pts: msg.pts, text: p.msg.text + msg.text };
      const mergedData = JSON.stringify(merged);
      this.pendingBytes += mergedData.length - p.data.length;
      this.pending[i] = { msg: merged, data: mergedData };
      this.deps.metrics.wsTokensCoalesced.inc();
      this.checkHardLimit();
      return true;
    }
    return false;
  }

  /** The caption carries the frame's whole text: its queued tokens are superseded. */
  private dropTokensOf(stream: string, frame: number): void {
    const before = this.pending.length;
    this.pending = this.pending.filter((p) => {
      const drop = p.msg.type === 'token' && p.msg.stream === stream && p.msg.frame === frame;
      if (drop) this.pendingBytes -= p.data.length;
      return !drop;
    });
    if (before > this.pending.length) this.deps.metrics.wsTokensCoalesced.inc(before - this.pending.length);
  }

  private checkHardLimit(): void {
    if (this.buffered > this.deps.limits().clientBufferBytes) this.closeSlow();
  }

  private write(data: string): void {
    this.deps.metrics.wsMessagesSent.inc();
    this.ws.send(data, (err) => {
      if (!err && this.pending.length > 0) this.flush();
    });
  }

  /** Sends queued messages while the socket is below the soft limit. */
  flush(): void {
    if (this.closing || this.ws.readyState !== WebSocket.OPEN) return;
    const soft = this.deps.limits().clientSoftBufferBytes;
    while (this.pending.length > 0 && this.ws.bufferedAmount < soft) {
      const p = this.pending.shift()!;
      this.pendingBytes -= p.data.length;
      this.write(p.data);
    }
  }

  private closeSlow(): void {
    if (this.closing) return;
    this.deps.logger.warn(
      { client: this.id, remote: this.remote, bufferedBytes: this.buffered, limit: this.deps.limits().clientBufferBytes },
      'websocket client too slow; closing with 4008 (resume)',
    );
    this.deps.metrics.wsSlowCloses.inc();
    this.pending = [];
    this.pendingBytes = 0;
    this.close(CLOSE_CODES.RESUME_REQUIRED, RESUME_REQUIRED_REASON, this.deps.slowCloseGraceMs);
  }

  /** Closes with a code; terminates if the peer has not completed the close within graceMs. */
  close(code: number, reason: string, graceMs = 2000): void {
    if (this.closing) return;
    this.closing = true;
    this.deps.onClosing(this);
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
      return;
    }
    const timer = setTimeout(() => this.ws.terminate(), graceMs);
    timer.unref();
    this.ws.once('close', () => clearTimeout(timer));
  }

  /** Returns false when the client exceeded the message rate. */
  countMessage(): boolean {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.windowCount = 0;
    }
    return ++this.windowCount <= MAX_MESSAGES_PER_SECOND;
  }
}

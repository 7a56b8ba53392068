// Per-client backpressure (src/server/client.ts): the fast path, token coalescing past the
// soft limit, captions superseding their frame's tokens, the flush once the socket drains,
// and the 4008 close past the hard limit. The socket here is a STUB: a real socket's
// bufferedAmount depends on the kernel's buffers and the peer's reading, which a test cannot
// set; the stub's bufferedAmount is set by the test. Metrics and messages are the real ones
// (backpressure.test.ts covers the same path end to end with real sockets).
import { beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { CaptionEvent, StatusEvent, TokenEvent } from '../../src/events.js';
import { silentLogger } from '../../src/logger.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { Client, type ClientLimits, type ClientSocket } from '../../src/server/client.js';

class StubSocket {
  readyState: number = WebSocket.OPEN;
  bufferedAmount = 0;
  readonly sent: string[] = [];
  closedWith: { code: number; reason: string } | undefined;
  terminated = false;
  private readonly callbacks: Array<(err?: Error) => void> = [];

  send(data: string, cb?: (err?: Error) => void): void {
    this.sent.push(data);
    if (cb) this.callbacks.push(cb);
  }
  /** The socket wrote out its buffer: run the send callbacks as ws does. */
  drain(): void {
    this.bufferedAmount = 0;
    for (const cb of this.callbacks.splice(0)) cb();
  }
  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    this.readyState = WebSocket.CLOSING;
  }
  terminate(): void {
    this.terminated = true;
  }
  ping(): void {}
  once(): this {
    return this;
  }
}

const SOFT = 1000;
const HARD = 4000;

let socket: StubSocket;
let metrics: Metrics;
let limits: ClientLimits;
let closing: Client[];
let client: Client;

beforeEach(() => {
  socket = new StubSocket();
  metrics = createMetrics({ defaultMetrics: false });
  limits = { clientSoftBufferBytes: SOFT, clientBufferBytes: HARD };
  closing = [];
  client = new Client(socket as unknown as ClientSocket, '127.0.0.1:1', {
    limits: () => limits,
    metrics,
    logger: silentLogger(),
    slowCloseGraceMs: 50,
    onClosing: (c) => closing.push(c),
  });
});

async function count(name: string): Promise<number> {
  const text = await metrics.registry.metrics();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

let seq = 0;
const token = (frame: number, text: string, stream = 's'): TokenEvent => ({ type: 'token', stream, seq: ++seq, frame, pts: frame / 2, text });
const caption = (frame: number, text: string, stream = 's'): CaptionEvent => ({ type: 'caption', stream, seq: ++seq, frame, start: frame / 2, end: frame / 2 + 0.5, text, latencyMs: 5 });
const status = (stream = 's'): StatusEvent => ({ type: 'status', stream, seq: ++seq, state: 'live', lagMs: 0, droppedFrames: 0 });
const sentTypes = (): string[] => socket.sent.map((d) => (JSON.parse(d) as { type: string }).type);

describe('client backpressure (stub socket)', () => {
  it('writes at once while the socket is under the soft limit', async () => {
    client.send(token(0, ' a'));
    client.send(caption(0, 'a'));
    expect(sentTypes()).toEqual(['token', 'caption']);
    expect(client.hasPending).toBe(false);
    expect(await count('casa_live_websocket_messages_sent_total')).toBe(2);
  });

  it('past the soft limit, merges the tokens of a frame and keeps captions and status', async () => {
    socket.bufferedAmount = SOFT;
    const t1 = token(3, ' a');
    const t2 = token(3, ' small');
    const t3 = token(3, ' square');
    client.send(t1);
    client.send(t2);
    client.send(t3);
    client.send(status());
    client.send(token(4, ' b'));
    expect(socket.sent).toEqual([]);
    expect(await count('casa_live_websocket_tokens_coalesced_total')).toBe(2);

    socket.drain();
    client.flush();
    const out = socket.sent.map((d) => JSON.parse(d) as { type: string; seq: number; text?: string; frame?: number });
    // One token for frame 3: the three texts joined, the seq and pts of the latest.
    expect(out[0]).toEqual({ ...t1, seq: t3.seq, pts: t3.pts, text: ' a small square' });
    expect(out.map((m) => m.type)).toEqual(['token', 'status', 'token']);
    expect(out[2]).toMatchObject({ frame: 4, text: ' b' });
    expect(client.hasPending).toBe(false);
  });

  it('a queued caption supersedes the queued tokens of its frame, not those of another stream', async () => {
    socket.bufferedAmount = SOFT;
    client.send(token(5, ' a'));
    client.send(token(5, ' b', 'other'));
    client.send(caption(5, 'a b'));
    expect(await count('casa_live_websocket_tokens_coalesced_total')).toBe(1);
    socket.drain();
    client.flush();
    expect(socket.sent.map((d) => JSON.parse(d) as { type: string; stream: string })).toEqual([
      expect.objectContaining({ type: 'token', stream: 'other' }),
      expect.objectContaining({ type: 'caption', stream: 's', text: 'a b' }),
    ]);
  });

  it('a message written while behind sends the rest once the socket drains (send callback)', () => {
    client.send(caption(0, 'first'));
    socket.bufferedAmount = SOFT;
    client.send(caption(1, 'second'));
    expect(sentTypes()).toEqual(['caption']);
    socket.drain();
    expect(socket.sent.map((d) => (JSON.parse(d) as { text: string }).text)).toEqual(['first', 'second']);
  });

  it('closes with 4008 past the hard limit, forgets what waited and sends nothing more', async () => {
    socket.bufferedAmount = SOFT;
    const big = 'x'.repeat(1200);
    client.send(caption(0, big));
    client.send(caption(1, big));
    expect(socket.closedWith).toBeUndefined();
    client.send(caption(2, big)); // 3 × ~1300 bytes waiting + 1000 in the socket > 4000
    expect(socket.closedWith).toEqual({ code: 4008, reason: 'slow consumer: resume from your last seq' });
    expect(closing).toEqual([client]);
    expect(client.hasPending).toBe(false);
    expect(await count('casa_live_websocket_slow_closes_total')).toBe(1);
    client.send(caption(3, 'late'));
    socket.drain();
    client.flush();
    expect(socket.sent).toEqual([]);
  });

  it('counts the socket\'s own buffer toward the hard limit', () => {
    socket.bufferedAmount = HARD;
    client.send(token(0, ' a'));
    expect(socket.closedWith?.code).toBe(4008);
  });

  it('reads the limits at every send (a reload applies to the next message)', () => {
    socket.bufferedAmount = SOFT;
    client.send(token(0, ' a'));
    expect(socket.sent).toEqual([]);
    limits = { clientSoftBufferBytes: SOFT * 10, clientBufferBytes: HARD * 10 };
    client.flush();
    expect(sentTypes()).toEqual(['token']);
  });
});

/**
 * The WebSocket feed: clients, subscriptions, replay on resume, pings and client messages.
 * Per-client backpressure (coalescing, the 4008 close) is the Client's (src/server/client.ts):
 * a slow client never delays the others, every send is non-blocking and per client.
 */
import type { IncomingMessage } from 'node:http';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { HelloEvent, StreamEvent } from '../events.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { formatPath } from '../zod-path.js';
import { Client, MAX_MESSAGES_PER_SECOND, type ClientDeps } from './client.js';
import { CLOSE_CODES, clientMessageSchema, type SubscribeMessage, type SubscribedMessage } from './protocol.js';
import type { RunnerState } from './stream-runner.js';
import type { ReplayResult } from './replay-ring.js';

/** What the hub needs from a stream to serve subscribers. */
export interface ReplaySource {
  readonly lastSeq: number;
  readonly state: RunnerState;
  replayAfter(from: number): ReplayResult;
  backfill(captions: number): StreamEvent[];
}

export interface HubOptions {
  metrics: Metrics;
  logger: Logger;
  limits: {
    maxClients: number;
    clientBufferBytes: number;
    clientSoftBufferBytes: number;
    maxPayloadBytes: number;
    pingIntervalMs: number;
    resumeWindow: number;
  };
  getStream: (id: string) => ReplaySource | undefined;
  hello: () => HelloEvent;
  /** How long a client closed for being slow may take to read its close frame. */
  slowCloseGraceMs?: number;
}

const MAX_ERRORS = 20;

export class Hub {
  readonly wss: WebSocketServer;
  readonly clients = new Set<Client>();
  private readonly subs = new Map<string, Set<Client>>();
  /** Per client and stream: a seq it already has that this node has not reached yet (cluster mode); nothing at or below it is sent. */
  private readonly floors = new Map<Client, Map<string, number>>();
  private pingTimer: NodeJS.Timeout;
  private flushTimer: NodeJS.Timeout;
  private readonly clientDeps: ClientDeps;

  constructor(readonly options: HubOptions) {
    this.clientDeps = {
      limits: () => this.options.limits,
      metrics: options.metrics,
      logger: options.logger,
      slowCloseGraceMs: options.slowCloseGraceMs ?? 5000,
      onClosing: (client) => this.unsubscribeAll(client),
    };
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.limits.maxPayloadBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.pingTimer = setInterval(() => this.pingAll(), options.limits.pingIntervalMs);
    this.flushTimer = setInterval(() => {
      for (const c of this.clients) if (c.hasPending) c.flush();
    }, 100);
    this.pingTimer.unref();
    this.flushTimer.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Applies new limits (reload). Existing clients get them for their next messages. */
  setLimits(limits: HubOptions['limits']): void {
    const pingChanged = limits.pingIntervalMs !== this.options.limits.pingIntervalMs;
    this.options.limits = limits;
    if (pingChanged) {
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.pingAll(), limits.pingIntervalMs);
      this.pingTimer.unref();
    }
  }

  /** Called after authentication at upgrade. */
  accept(ws: WebSocket, req: IncomingMessage): Client {
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const client = new Client(ws, remote, this.clientDeps);
    this.clients.add(client);
    const m = this.options.metrics;
    m.wsConnections.inc();
    m.wsClients.set(this.clients.size);
    const log = this.options.logger;
    log.debug({ client: client.id, remote }, 'websocket client connected');

    ws.on('pong', () => {
      client.alive = true;
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      client.alive = true;
      this.onMessage(client, data, isBinary);
    });
    ws.on('error', (err) => {
      log.debug({ client: client.id, err }, 'websocket client error');
    });
    ws.on('close', (code, reason) => {
      this.clients.delete(client);
      this.unsubscribeAll(client);
      m.wsClients.set(this.clients.size);
      log.debug({ client: client.id, code, reason: reason.toString() }, 'websocket client disconnected');
    });
    client.send(this.options.hello());
    return client;
  }

  /** Sends one stream event to its subscribers. */
  publish(ev: StreamEvent): void {
    const set = this.subs.get(ev.stream);
    if (!set || set.size === 0) return;
    const data = JSON.stringify(ev);
    for (const c of set) if (this.floors.size === 0 || this.above(c, ev)) c.send(ev, data);
  }

  unsubscribeAll(client: Client): void {
    for (const id of client.subs) this.subs.get(id)?.delete(client);
    client.subs.clear();
    this.floors.delete(client);
  }

  /** Whether `ev` is above the client's floor for its stream (the floor goes once passed). */
  private above(client: Client, ev: StreamEvent): boolean {
    const floors = this.floors.get(client);
    const floor = floors?.get(ev.stream);
    if (floor === undefined) return true;
    if (ev.seq <= floor) return false;
    floors!.delete(ev.stream);
    if (floors!.size === 0) this.floors.delete(client);
    return true;
  }

  private setFloor(client: Client, id: string, seq: number): void {
    let floors = this.floors.get(client);
    if (!floors) this.floors.set(client, (floors = new Map()));
    floors.set(id, seq);
  }

  /** Closes every client with `code` and waits (bounded) for them to go. */
  async closeAll(code: number, reason: string, timeoutMs = 1500): Promise<void> {
    clearInterval(this.pingTimer);
    clearInterval(this.flushTimer);
    const closing = [...this.clients].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.ws.readyState === WebSocket.CLOSED) return resolve();
          c.ws.once('close', () => resolve());
          c.flush();
          c.close(code, reason, timeoutMs);
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(closing), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs + 250)))]);
    clearTimeout(timer);
    for (const c of this.clients) c.ws.terminate();
    this.wss.close();
  }

  private pingAll(): void {
    for (const c of this.clients) {
      if (!c.alive) {
        this.options.logger.info({ client: c.id, remote: c.remote }, 'websocket client did not answer ping; dropping it');
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.ws.ping();
      } catch {
        c.ws.terminate();
      }
    }
  }

  private sendError(client: Client, reason: string, request?: unknown): void {
    client.send(request === undefined ? { type: 'error', reason } : { type: 'error', reason, request });
  }

  private onMessage(client: Client, data: RawData, isBinary: boolean): void {
    if (client.closing) return;
    if (!client.countMessage()) {
      this.sendError(client, `too many messages (limit ${MAX_MESSAGES_PER_SECOND} per second)`);
      client.close(CLOSE_CODES.POLICY_VIOLATION, 'message rate limit exceeded');
      return;
    }
    const fail = (reason: string, request?: unknown): void => {
      client.errors++;
      this.sendError(client, reason, request);
      if (client.errors >= MAX_ERRORS) client.close(CLOSE_CODES.POLICY_VIOLATION, 'too many invalid messages');
    };
    if (isBinary) return fail('binary messages are not supported; send JSON text');
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return fail('malformed JSON');
    }
    const parsed = clientMessageSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? `${formatPath(issue.path)}: ` : '';
      const what = issue?.code === 'invalid_union' || (issue?.path[0] === 'type' && issue.code !== 'unrecognized_keys')
        ? 'unknown message type (expected subscribe, unsubscribe or ping)'
        : issue?.message ?? 'invalid';
      return fail(`invalid message: ${where}${what}`, json);
    }
    const msg = parsed.data;
    switch (msg.type) {
      case 'ping':
        client.send(msg.id === undefined ? { type: 'pong', time: Date.now() / 1000 } : { type: 'pong', id: msg.id, time: Date.now() / 1000 });
        return;
      case 'unsubscribe':
        for (const id of msg.streams) {
          client.subs.delete(id);
          this.subs.get(id)?.delete(client);
          this.floors.get(client)?.delete(id);
        }
        client.send({ type: 'unsubscribed', streams: msg.streams });
        return;
      case 'subscribe':
        this.subscribe(client, msg, json);
        return;
    }
  }

  /**
   * Subscribes and replays synchronously, so no live event can slip between the replay and
   * the live feed: the client sees each seq of a stream at most once and in order.
   */
  private subscribe(client: Client, msg: SubscribeMessage, request: unknown): void {
    const ack: SubscribedMessage = { type: 'subscribed', streams: [] };
    const replays: Array<{ id: string; events: StreamEvent[] }> = [];
    const errors: string[] = [];
    for (const id of new Set(msg.streams)) {
      const source = this.options.getStream(id);
      if (!source) {
        errors.push(`unknown stream "${id}"`);
        continue;
      }
      const from = msg.resume?.[id];
      let events: StreamEvent[];
      if (from !== undefined) {
        const r = source.replayAfter(from);
        events = r.events;
        this.options.metrics.wsResumes.inc();
        if (r.wait) this.setFloor(client, id, from);
        if (r.ahead) {
          errors.push(`resume seq ${from} of "${id}" is ahead of the stream (last seq ${source.lastSeq}); the server's log was reset, start over from the events that follow`);
        } else if (r.gap) {
          errors.push(
            `resume gap on "${id}": events ${r.gap.from}..${r.gap.to} are outside the resume window (${this.options.limits.resumeWindow} events); ` +
              `fetch them from GET /v1/streams/${id}/captions?after=${r.gap.from - 1}`,
          );
        }
      } else {
        events = source.backfill(msg.backfill ?? 0);
      }
      // Subscribing again to a stream only adds its replay; the live feed continues as before.
      client.subs.add(id);
      let set = this.subs.get(id);
      if (!set) this.subs.set(id, (set = new Set()));
      set.add(client);
      ack.streams.push({ stream: id, state: source.state, lastSeq: source.lastSeq, replay: events.length });
      replays.push({ id, events });
    }
    for (const reason of errors) this.sendError(client, reason, request);
    if (ack.streams.length > 0) client.send(ack);
    for (const r of replays) for (const ev of r.events) client.send(ev);
  }
}

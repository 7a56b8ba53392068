/**
 * MQTT output (npm `mqtt`), with Frigate's conventions where they apply (docs.frigate.video,
 * "MQTT"): a topic prefix (default `casa-live`), `<prefix>/available` = `online` / `offline`
 * (retained; `offline` is also the connection's last will, so a crash shows), and per stream
 * `<prefix>/<stream>/caption` (the caption event as JSON, retained: the last caption),
 * `<prefix>/<stream>/status` (the status event, retained) and, when asked for,
 * `<prefix>/<stream>/token` (token events, not retained). Payloads are the events of
 * docs/protocol.md; with QoS 1 a message may come twice: `seq` tells.
 *
 * Reconnects follow the project's backoff (mqtt.js' own timer is off); messages wait in this
 * sink's bounded queue meanwhile. `mqtts://` with a CA, client certificate and key; user name
 * and password (a secret).
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

type QoS = 0 | 1 | 2;
import { MQTT_DEFAULTS } from '../config/schema.js';
import type { StreamEvent } from '../events.js';
import { backoffDelay } from '../ingest/backoff.js';
import { redactUrl } from '../ingest/input.js';
import { clip, type Logger } from '../logger.js';
import { DeliveryQueue, type Batch } from './delivery.js';
import type { EventSink } from './outputs.js';

export interface MqttSinkOptions {
  /** mqtt://host[:port] or mqtts://host[:port] (also ws:// and wss://). */
  url: string;
  username?: string;
  password?: string;
  clientId?: string;
  topicPrefix?: string;
  qos?: QoS;
  /** Publish token events too (default false: a few per second per stream). */
  tokens?: boolean;
  /** PEM files for mqtts://: the broker's CA, this client's certificate and key. */
  tls?: { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
  keepaliveSeconds?: number;
  logger: Logger;
}

interface Message {
  topic: string;
  payload: string;
  retain: boolean;
}

const RECONNECT = { initialDelayMs: 500, maxDelayMs: 30_000 };

/** The topic of an event, or undefined for an event not published. */
export function mqttTopic(prefix: string, ev: StreamEvent, tokens: boolean): string | undefined {
  if (ev.type === 'token' && !tokens) return undefined;
  return `${prefix}/${ev.stream}/${ev.type}`;
}

export class MqttSink implements EventSink {
  readonly name = 'mqtt';
  private readonly client: MqttClient;
  private readonly queue: DeliveryQueue<Message>;
  private readonly prefix: string;
  private readonly qos: QoS;
  private reconnects = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closing = false;
  /** The last status of each stream: republished (retained) on every connect. */
  private readonly statuses = new Map<string, Message>();

  constructor(private readonly options: MqttSinkOptions) {
    this.prefix = (options.topicPrefix ?? MQTT_DEFAULTS.topicPrefix).replace(/\/+$/, '');
    this.qos = options.qos ?? MQTT_DEFAULTS.qos;
    this.queue = new DeliveryQueue<Message>({
      capacity: 10_000,
      maxBatch: 100,
      deliver: (batch) => this.publish(batch),
      backoff: RECONNECT,
      logger: options.logger,
    });
    this.client = mqtt.connect(options.url, this.clientOptions());
    this.client.on('connect', () => this.onConnect());
    this.client.on('close', () => this.onClose());
    this.client.on('error', (err) => options.logger.warn({ err: clip(err.message) }, 'mqtt: connection error'));
  }

  /** Connected to the broker now. */
  get connected(): boolean {
    return this.client.connected;
  }

  get delivery(): DeliveryQueue<Message> {
    return this.queue;
  }

  push(ev: StreamEvent): void {
    const topic = mqttTopic(this.prefix, ev, this.options.tokens === true);
    if (!topic) return;
    const msg = { topic, payload: JSON.stringify(ev), retain: ev.type !== 'token' };
    if (ev.type === 'status') this.statuses.set(ev.stream, msg);
    this.queue.push(msg);
  }

  /** Sends what is queued (up to 2 s), publishes `offline`, disconnects (4 s at most in all). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    await this.queue.close(2000);
    if (this.client.connected) {
      await withTimeout(this.client.publishAsync(this.availableTopic, 'offline', { qos: this.qos, retain: true }), 1000).catch(() => undefined);
    }
    await withTimeout(this.client.endAsync(), 1000).catch(() => this.client.end(true));
  }

  private get availableTopic(): string {
    return `${this.prefix}/available`;
  }

  private clientOptions(): IClientOptions {
    const o = this.options;
    const tls = o.tls ?? {};
    return {
      clientId: o.clientId ?? `casa-live-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: o.password } : {}),
      keepalive: o.keepaliveSeconds ?? 30,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      queueQoSZero: false,
      will: { topic: this.availableTopic, payload: Buffer.from('offline'), qos: this.qos, retain: true },
      ...(tls.ca !== undefined ? { ca: readFileSync(tls.ca) } : {}),
      ...(tls.cert !== undefined ? { cert: readFileSync(tls.cert) } : {}),
      ...(tls.key !== undefined ? { key: readFileSync(tls.key) } : {}),
      ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {}),
    };
  }

  private onConnect(): void {
    this.reconnects = 0;
    this.options.logger.info({ broker: clip(redactUrl(this.options.url)) }, 'mqtt: connected');
    const retained = [{ topic: this.availableTopic, payload: 'online', retain: true }, ...this.statuses.values()];
    for (const m of retained) this.client.publish(m.topic, m.payload, { qos: this.qos, retain: m.retain }, () => undefined);
    this.queue.retryNow();
  }

  private onClose(): void {
    if (this.closing || this.reconnectTimer) return;
    const delay = backoffDelay(++this.reconnects, RECONNECT.initialDelayMs, RECONNECT.maxDelayMs);
    this.options.logger.warn({ retryInMs: delay, attempt: this.reconnects }, 'mqtt: disconnected; reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.closing) this.client.reconnect();
    }, delay);
  }

  /**
   * Publishes a batch. A connection lost meanwhile fails it (mqtt.js would keep the QoS ≥ 1
   * messages in flight pending until it reconnects by itself, which it does not do here): the
   * batch is sent again after the reconnect, so a subscriber may get a message twice (QoS 1).
   */
  private async publish(batch: Batch<Message>): Promise<void> {
    if (!this.client.connected) throw new Error('not connected to the broker');
    let onClose: (() => void) | undefined;
    const lost = new Promise<never>((_, reject) => {
      onClose = () => reject(new Error('connection lost while publishing'));
      this.client.once('close', onClose);
    });
    try {
      await Promise.race([Promise.all(batch.items.map((m) => this.client.publishAsync(m.topic, m.payload, { qos: this.qos, retain: m.retain }))), lost]);
    } finally {
      this.client.off('close', onClose!);
      lost.catch(() => undefined);
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), ms);
    }),
  ]);
}

/**
 * The daemon's outputs besides the WebSocket feed (docs/outputs.md): every stamped event the
 * stream runners broadcast also goes to each output sink — MQTT, YouTube Live captions, a
 * stream's HLS subtitles. This is the one fan-out point. A sink takes an event without
 * waiting (each has its own bounded queue and backoff, src/sinks/delivery.ts); a sink that
 * throws is logged once and skipped: it never disturbs the stream or the other sinks.
 *
 * Sinks are declared as specs (a key that changes when the sink's settings change, and how
 * to open it): `apply(scope, specs)` closes the sinks of that scope whose key is gone and
 * opens the new ones, so a reload touches only what changed.
 */
import type { StreamEvent } from '../events.js';
import type { Logger } from '../logger.js';
import { hlsDir, type OutputsConfig, type StreamConfig } from '../config/schema.js';
import { HlsSubtitleSink } from './hls-subtitles.js';
import { MqttSink } from './mqtt.js';
import { YouTubeCaptionSink } from './youtube.js';

export interface EventSink {
  readonly name: string;
  /** Takes one event; must return at once (queue it) and should not throw. */
  push(ev: StreamEvent): void;
  /** Sends what it still holds (briefly), then lets go of its connections. */
  close(): Promise<void>;
}

export interface SinkSpec {
  /** Identifies the sink and its settings: a different key means a different sink. */
  key: string;
  open: () => EventSink;
}

export class SinkFanout {
  private readonly sinks = new Map<string, EventSink>();
  private readonly failed = new Set<string>();
  private changes: Promise<unknown> = Promise.resolve();

  constructor(private readonly logger: Logger) {}

  get names(): string[] {
    return [...this.sinks.values()].map((s) => s.name);
  }

  publish(ev: StreamEvent): void {
    for (const [key, sink] of this.sinks) {
      try {
        sink.push(ev);
      } catch (err) {
        if (this.failed.has(key)) continue;
        this.failed.add(key);
        this.logger.error({ err, sink: sink.name }, 'output failed to take an event; it keeps getting the next ones');
      }
    }
  }

  /** The sinks whose keys start with `scope` become exactly `specs` (each key prefixed with it); one change at a time. */
  apply(scope: string, specs: readonly SinkSpec[]): Promise<void> {
    const run = this.changes.then(() => this.reconcile(scope, specs));
    this.changes = run.catch(() => undefined);
    return run;
  }

  private async reconcile(scope: string, specs: readonly SinkSpec[]): Promise<void> {
    const wanted = new Map(specs.map((s) => [scope + s.key, s]));
    const gone = [...this.sinks.keys()].filter((k) => k.startsWith(scope) && !wanted.has(k));
    await Promise.all(gone.map((k) => this.remove(k)));
    for (const [key, spec] of wanted) {
      if (this.sinks.has(key)) continue;
      try {
        const sink = spec.open();
        this.sinks.set(key, sink);
        this.failed.delete(key);
      } catch (err) {
        this.logger.error({ err: err instanceof Error ? err.message : String(err), output: key.split('|')[0] }, 'output could not be opened');
      }
    }
  }

  async close(): Promise<void> {
    await this.changes;
    await Promise.all([...this.sinks.keys()].map((k) => this.remove(k)));
  }

  private async remove(key: string): Promise<void> {
    const sink = this.sinks.get(key);
    this.sinks.delete(key);
    await sink?.close().catch((err: unknown) => this.logger.warn({ err, sink: sink.name }, 'output did not close cleanly'));
  }
}

/** The configured MQTT and YouTube outputs as specs (their keys hold their settings, secrets included: never logged). */
export function configuredOutputs(outputs: OutputsConfig, logger: Logger): SinkSpec[] {
  const specs: SinkSpec[] = [];
  const m = outputs.mqtt;
  if (m) {
    specs.push({
      key: `mqtt|${JSON.stringify(m)}`,
      open: () => new MqttSink({ ...m, logger: logger.child({ output: 'mqtt' }) }),
    });
  }
  for (const y of outputs.youtube) {
    specs.push({
      key: `youtube|${JSON.stringify(y)}`,
      open: () => new YouTubeCaptionSink({ ...y, logger: logger.child({ output: 'youtube', stream: y.stream }) }),
    });
  }
  return specs;
}

/** A stream's own outputs: the WebVTT rendition of its HLS, when `hls.enabled`. */
export function streamOutputs(stream: StreamConfig | undefined, dataDir: string, logger: Logger): SinkSpec[] {
  const hls = stream?.enabled ? stream.hls : undefined;
  if (!stream || !hls?.enabled) return [];
  const dir = hlsDir(dataDir, stream.id);
  return [
    {
      key: `hls|${JSON.stringify(hls)}|${stream.input}`,
      open: () => new HlsSubtitleSink({ stream: stream.id, dir, hls, logger: logger.child({ output: 'hls', stream: stream.id }) }),
    },
  ];
}

/**
 * The daemon's outputs: the configured ones (`configure`, at start and on reload) and each
 * stream's own, brought in line with the stream's config at each of its status events (a
 * stream starts, restarts with a new config, or is removed: each says so with a status).
 */
export class DaemonOutputs {
  private readonly fanout: SinkFanout;

  constructor(
    private readonly dataDir: string,
    private readonly streamConfig: (id: string) => StreamConfig | undefined,
    private readonly logger: Logger,
  ) {
    this.fanout = new SinkFanout(logger);
  }

  configure(outputs: OutputsConfig): Promise<void> {
    return this.fanout.apply('config:', configuredOutputs(outputs, this.logger));
  }

  publish(ev: StreamEvent): void {
    this.fanout.publish(ev);
    if (ev.type !== 'status') return;
    // `ended`: stopped for good (removed, disabled, input over, shutting down): its outputs close.
    const specs = ev.state === 'ended' ? [] : streamOutputs(this.streamConfig(ev.stream), this.dataDir, this.logger);
    void this.fanout.apply(`stream:${ev.stream}/`, specs);
  }

  close(): Promise<void> {
    return this.fanout.close();
  }
}

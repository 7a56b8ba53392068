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
import type { OutputsConfig } from '../config/schema.js';
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

  /** The sinks whose keys start with `scope` become exactly `specs` (each key prefixed with it). */
  async apply(scope: string, specs: readonly SinkSpec[]): Promise<void> {
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

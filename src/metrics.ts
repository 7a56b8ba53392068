/**
 * Prometheus metrics (prom-client). Each server owns its own Registry, so several servers
 * can live in one process (tests) without clashing.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  framesIn: Counter<'stream'>;
  framesDropped: Counter<'stream'>;
  tokens: Counter<'stream'>;
  captions: Counter<'stream'>;
  captionLatency: Histogram<'stream'>;
  kvTokens: Gauge<'stream'>;
  reconnects: Counter<'stream'>;
  streamStartup: Histogram<'stream'>;
  streamState: Gauge<'stream' | 'state'>;
  wsClients: Gauge;
  wsConnections: Counter;
  wsRejected: Counter<'reason'>;
  wsMessagesSent: Counter;
  wsTokensCoalesced: Counter;
  wsSlowCloses: Counter;
  wsResumes: Counter;
  captionLogWrites: Counter<'stream'>;
  captionLogErrors: Counter<'stream'>;
  modelLoaded: Gauge;
  /** Cluster mode only (docs/cluster.md): this node's view of the cluster. */
  cluster?: ClusterMetrics;
  /** Removes every series of one stream (stream removed at run time). */
  removeStream(stream: string): void;
}

export interface ClusterMetrics {
  streamsOwned: Gauge;
  streams: Gauge;
  nodes: Gauge;
  redisUp: Gauge;
  degraded: Gauge;
  leaseRenew: Histogram;
  redisRoundTrip: Histogram;
  leases: Counter<'event'>;
  buffered: Gauge;
  bufferDropped: Counter<'kind'>;
  fenced: Counter;
}

export const STREAM_STATES = ['connecting', 'live', 'reconnecting', 'ended', 'error', 'stopped'] as const;

/** The cluster gauges, counters and histograms (registered only in cluster mode). */
function createClusterMetrics(registers: Registry[]): ClusterMetrics {
  const seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
  return {
    streamsOwned: new Gauge({ name: 'casa_live_cluster_streams_owned', help: 'Streams whose lease this node holds (it captions them).', registers }),
    streams: new Gauge({ name: 'casa_live_cluster_streams', help: 'Streams defined in the cluster.', registers }),
    nodes: new Gauge({ name: 'casa_live_cluster_nodes', help: 'Live nodes of the cluster, as this node last saw them.', registers }),
    redisUp: new Gauge({ name: 'casa_live_cluster_redis_up', help: '1 while this node\'s Redis connection is ready.', registers }),
    degraded: new Gauge({ name: 'casa_live_cluster_degraded', help: '1 while Redis is unreachable or refusing writes: events are buffered in memory.', registers }),
    leaseRenew: new Histogram({ name: 'casa_live_cluster_lease_renew_seconds', help: 'Time to renew this node\'s leases (one round trip for all of them).', buckets: seconds, registers }),
    redisRoundTrip: new Histogram({ name: 'casa_live_cluster_redis_roundtrip_seconds', help: 'Round trip of this node\'s heartbeat to Redis.', buckets: seconds, registers }),
    leases: new Counter({ name: 'casa_live_cluster_leases_total', help: 'Lease events: acquired, released (handed over), lost (expired or taken).', labelNames: ['event'], registers }),
    buffered: new Gauge({ name: 'casa_live_cluster_buffered_events', help: 'Events waiting to be written to Redis.', registers }),
    bufferDropped: new Counter({ name: 'casa_live_cluster_buffer_dropped_total', help: 'Buffered events dropped past cluster.bufferLimit: token first, committed (caption/status) only when no token is left.', labelNames: ['kind'], registers }),
    fenced: new Counter({ name: 'casa_live_cluster_fenced_events_total', help: 'Events refused because this node no longer held the stream\'s lease (they were never published).', registers }),
  };
}

export function createMetrics(options: { defaultMetrics?: boolean; cluster?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'casa_live_' });
  const registers = [registry];

  const framesIn = new Counter({ name: 'casa_live_frames_in_total', help: 'Frames received from ingest.', labelNames: ['stream'], registers });
  const framesDropped = new Counter({ name: 'casa_live_frames_dropped_total', help: 'Stale frames dropped because the caption session was behind.', labelNames: ['stream'], registers });
  const tokens = new Counter({ name: 'casa_live_tokens_total', help: 'Text tokens sampled.', labelNames: ['stream'], registers });
  const captions = new Counter({ name: 'casa_live_captions_total', help: 'Captions committed (one per captioned frame).', labelNames: ['stream'], registers });
  const captionLatency = new Histogram({
    name: 'casa_live_frame_to_caption_latency_seconds',
    help: 'Time from a frame being received to its caption being committed.',
    labelNames: ['stream'],
    buckets: [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10],
    registers,
  });
  const kvTokens = new Gauge({ name: 'casa_live_kv_tokens', help: 'Text tokens held in the stream\'s KV cache.', labelNames: ['stream'], registers });
  const reconnects = new Counter({
    name: 'casa_live_stream_reconnects_total',
    help: 'Retries of a stream: its input reconnected after a failure, or its pipeline restarted after it ended or failed.',
    labelNames: ['stream'],
    registers,
  });
  const streamStartup = new Histogram({
    name: 'casa_live_stream_startup_seconds',
    help: 'Start-up time of a stream\'s input: ffmpeg started (after any wait for a start slot) to its first frame, per attempt.',
    labelNames: ['stream'],
    buckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20],
    registers,
  });
  const streamState = new Gauge({ name: 'casa_live_stream_state', help: '1 for the current state of each stream.', labelNames: ['stream', 'state'], registers });
  const wsClients = new Gauge({ name: 'casa_live_websocket_clients', help: 'Connected WebSocket clients.', registers });
  const wsConnections = new Counter({ name: 'casa_live_websocket_connections_total', help: 'WebSocket connections accepted.', registers });
  const wsRejected = new Counter({ name: 'casa_live_websocket_rejected_total', help: 'WebSocket upgrades refused.', labelNames: ['reason'], registers });
  const wsMessagesSent = new Counter({ name: 'casa_live_websocket_messages_sent_total', help: 'Messages written to WebSocket clients.', registers });
  const wsTokensCoalesced = new Counter({ name: 'casa_live_websocket_tokens_coalesced_total', help: 'Token events merged or superseded for slow clients.', registers });
  const wsSlowCloses = new Counter({ name: 'casa_live_websocket_slow_closes_total', help: 'Clients closed with 4008 (buffer limit; resume from last seq).', registers });
  const wsResumes = new Counter({ name: 'casa_live_websocket_resumes_total', help: 'Subscriptions that resumed from a seq.', registers });
  const captionLogWrites = new Counter({ name: 'casa_live_caption_log_writes_total', help: 'Events appended to the durable caption log.', labelNames: ['stream'], registers });
  const captionLogErrors = new Counter({ name: 'casa_live_caption_log_errors_total', help: 'Failed caption log appends.', labelNames: ['stream'], registers });
  const modelLoaded = new Gauge({ name: 'casa_live_model_loaded', help: '1 once the model is loaded.', registers });

  const perStream = [framesIn, framesDropped, tokens, captions, captionLatency, kvTokens, reconnects, streamStartup, captionLogWrites, captionLogErrors];
  return {
    registry,
    framesIn,
    framesDropped,
    tokens,
    captions,
    captionLatency,
    kvTokens,
    reconnects,
    streamStartup,
    streamState,
    wsClients,
    wsConnections,
    wsRejected,
    wsMessagesSent,
    wsTokensCoalesced,
    wsSlowCloses,
    wsResumes,
    captionLogWrites,
    captionLogErrors,
    modelLoaded,
    ...(options.cluster ? { cluster: createClusterMetrics(registers) } : {}),
    removeStream(stream: string) {
      for (const m of perStream) (m as Counter<'stream'>).remove({ stream });
      for (const state of STREAM_STATES) streamState.remove({ stream, state });
    },
  };
}

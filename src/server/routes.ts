/**
 * The HTTP API of `casa-live serve` as one route table (docs/serve.md): health, readiness,
 * metrics, the overlay page, the stream API and the index. The server's dispatcher matches
 * a request, checks the route's access once, then calls its handler.
 */
import { STREAM_ID_RE } from '../events.js';
import { parseStream } from '../config/load.js';
import type { ServeConfig, StreamConfig } from '../config/schema.js';
import type { Metrics } from '../metrics.js';
import { VERSION } from '../version.js';
import { OVERLAY_CSP, OVERLAY_HTML } from './overlay/page.js';
import { indexRoute, pageRoutes } from './pages/index.js';
import { WS_PATH } from './protocol.js';
import { HttpError, readJson, sendJson, type Route, type RouteRequest } from './router.js';
import type { ManagedStream, Streams } from './stream-manager.js';
import type { ModelState } from './types.js';

/** What the routes read from the server (at request time: the config changes on reload). */
export interface ApiHost {
  readonly config: ServeConfig;
  readonly manager: Streams;
  readonly metrics: Metrics;
  readonly model: ModelState;
  readonly isClosing: boolean;
  readonly uptimeSeconds: number;
}

const STREAM = /^\/v1\/streams\/([^/]+)$/;

export function apiRoutes(host: ApiHost): Route[] {
  return [
    { methods: ['GET', 'HEAD'], pattern: /^\/healthz$/, access: 'public', handler: ({ res }) => sendJson(res, 200, { status: 'ok', version: VERSION, uptimeSeconds: host.uptimeSeconds }) },
    { methods: ['GET', 'HEAD'], pattern: /^\/readyz$/, access: 'public', handler: ({ res }) => readiness(host, res) },
    { methods: ['GET'], pattern: /^\/metrics$/, access: () => (host.config.auth.protectMetrics ? 'viewer' : 'public'), handler: ({ res }) => metrics(host, res) },
    { methods: ['GET', 'HEAD'], pattern: /^\/overlay\/([^/]+)$/, access: 'public', handler: overlay },
    { methods: ['GET'], pattern: /^\/v1\/streams$/, access: 'viewer', handler: ({ res }) => sendJson(res, 200, { streams: host.manager.list() }) },
    { methods: ['POST'], pattern: /^\/v1\/streams$/, access: 'admin', handler: (r) => addStream(host, r) },
    { methods: ['GET'], pattern: /^\/v1\/streams\/([^/]+)\/captions$/, access: 'viewer', handler: (r) => history(host, r) },
    { methods: ['GET'], pattern: STREAM, access: 'viewer', handler: ({ res, params }) => sendJson(res, 200, { stream: runnerOf(host, params[0]!).info() }) },
    { methods: ['PUT'], pattern: STREAM, access: 'admin', handler: (r) => replaceStream(host, r) },
    { methods: ['DELETE'], pattern: STREAM, access: 'admin', handler: (r) => removeStream(host, r) },
    { methods: ['GET', 'HEAD'], pattern: /^\/$/, access: 'public', handler: indexRoute(host, () => INDEX) },
    ...pageRoutes(host),
  ];
}

const INDEX = {
  name: 'casa-live',
  version: VERSION,
  endpoints: ['/healthz', '/readyz', '/metrics', '/v1/streams', WS_PATH, '/overlay/<stream>?token=...', '/watch/<stream>?token=...', '/hls/<stream>/master.m3u8?token=...'],
};

function readiness(host: ApiHost, res: RouteRequest['res']): void {
  const ready = host.model.state === 'loaded' && !host.isClosing;
  const cluster = host.manager.cluster?.();
  sendJson(res, ready ? 200 : 503, {
    ready,
    ...(host.isClosing ? { shuttingDown: true } : {}),
    // Cluster mode: degraded while Redis is unreachable (captioning goes on, events are buffered).
    ...(cluster ? { degraded: cluster.degraded, cluster: cluster.status } : {}),
    model: host.model,
    streams: host.manager.list().map(({ config: _c, ...info }) => info),
  });
}

async function metrics(host: ApiHost, res: RouteRequest['res']): Promise<void> {
  host.manager.collectStats();
  const body = await host.metrics.registry.metrics();
  res.writeHead(200, { 'Content-Type': host.metrics.registry.contentType, 'Cache-Control': 'no-store' });
  res.end(body);
}

function overlay({ res, method, params }: RouteRequest): void {
  if (!STREAM_ID_RE.test(params[0]!)) throw new HttpError(404, 'not a valid stream id');
  res.writeHead(200, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Security-Policy': OVERLAY_CSP,
    'Cache-Control': 'no-cache',
    'Referrer-Policy': 'no-referrer',
  });
  res.end(method === 'HEAD' ? undefined : OVERLAY_HTML);
}

function runnerOf(host: ApiHost, id: string): ManagedStream {
  const runner = host.manager.get(id);
  if (!runner) throw new HttpError(404, `stream "${id}" does not exist`);
  return runner;
}

async function history(host: ApiHost, { res, url, params }: RouteRequest): Promise<void> {
  const id = params[0]!;
  const runner = runnerOf(host, id);
  const after = Number(url.searchParams.get('after') ?? 0);
  const limit = Math.min(10_000, Math.max(1, Number(url.searchParams.get('limit') ?? 1000)));
  if (!Number.isInteger(after) || after < 0 || !Number.isFinite(limit)) throw new HttpError(400, 'after must be a seq (integer >= 0) and limit a number');
  sendJson(res, 200, { stream: id, events: await runner.history(after, Math.floor(limit)) });
}

/** A stream from a request body, or 400 with every problem. */
function validStream(host: ApiHost, body: unknown): StreamConfig {
  const { stream, problems } = parseStream(body, host.config);
  if (!stream) throw new HttpError(400, problems.map((p) => `${p.path}: ${p.message}`).join('; '), { problems });
  return stream;
}

async function addStream(host: ApiHost, { req, res }: RouteRequest): Promise<void> {
  const body = await readJson(req);
  const info = await host.manager.add(validStream(host, body), body);
  sendJson(res, 201, { stream: info });
}

async function replaceStream(host: ApiHost, { req, res, params }: RouteRequest): Promise<void> {
  const id = params[0]!;
  const body = await readJson(req);
  const withId = body !== null && typeof body === 'object' && !Array.isArray(body) ? { id, ...(body as Record<string, unknown>) } : body;
  if ((withId as { id?: unknown }).id !== id) throw new HttpError(400, `id: must be "${id}" (the stream in the URL)`);
  sendJson(res, 200, { stream: await host.manager.replace(validStream(host, withId), withId) });
}

async function removeStream(host: ApiHost, { res, params }: RouteRequest): Promise<void> {
  await host.manager.remove(params[0]!);
  sendJson(res, 200, { removed: params[0] });
}

/**
 * `casa-live serve`: HTTP (health, readiness, metrics, stream API, overlay) and the
 * WebSocket feed on one port, the stream manager, model readiness, reload and shutdown.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import { VERSION } from '../version.js';
import type { HelloEvent } from '../events.js';
import { createLogger, type Logger } from '../logger.js';
import { createMetrics, type Metrics } from '../metrics.js';
import { loadConfig, ConfigInvalidError, type ConfigProblem } from '../config/load.js';
import type { ServeConfig } from '../config/schema.js';
import { DaemonOutputs } from '../sinks/outputs.js';
import { Authorizer, satisfies, tokenOf } from './auth.js';
import { Hub } from './hub.js';
import { CLOSE_CODES, WS_PATH, WS_PATH_ALIAS } from './protocol.js';
import { HttpError, matchRoute, sendJson, type Access, type Route } from './router.js';
import { apiRoutes } from './routes.js';
import { StreamExistsError, StreamLimitError, StreamManager, StreamNotFoundError, StreamOwnershipError, type Streams } from './stream-manager.js';
import { ClusterStreams } from './cluster-streams.js';
import type { RunnerDeps } from './stream-runner.js';
import type { PipelineFactory, PrepareHook } from '../pipeline/types.js';
import type { ModelState } from './types.js';

const PRUNE_INTERVAL_MS = 3_600_000;

export { VERSION };

export interface ServerOptions {
  config: ServeConfig;
  pipelineFactory: PipelineFactory;
  /** Loads the shared model; streams start once it resolves. Absent: ready at once. */
  prepare?: PrepareHook;
  logger?: Logger;
  /** How long a stream's pipeline.stop() may take at shutdown/removal (default 5000 ms). */
  stopTimeoutMs?: number;
  /** How long a client closed with 4008 may take to read its close frame (default 5000 ms). */
  slowCloseGraceMs?: number;
}

/** Every cluster field but maxStreams takes a restart (so does adding or removing the section). */
function clusterNeedsRestart(a: ServeConfig['cluster'], b: ServeConfig['cluster']): boolean {
  if (!a || !b) return a !== b;
  return !isDeepStrictEqual({ ...a, maxStreams: 0 }, { ...b, maxStreams: 0 });
}

export type ReloadResult =
  | { ok: true; added: string[]; changed: string[]; removed: string[]; restartNeeded: string[] }
  | { ok: false; error: string; problems?: ConfigProblem[] };

export class CasaServer {
  config: ServeConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The streams: this process's own, or in cluster mode the cluster's (src/server/cluster-streams.ts). */
  readonly manager: Streams;
  readonly hub: Hub;
  /** MQTT, YouTube and HLS-subtitle outputs: every event broadcast goes to them too. */
  readonly outputs: DaemonOutputs;
  model: ModelState;
  /** Resolves once the model is loaded and streams started; rejects when prepare fails. */
  readonly ready: Promise<void>;

  private readonly httpServer: http.Server;
  private readonly routes: Route[];
  private authorizer: Authorizer;
  private readonly deps: RunnerDeps;
  private closing: Promise<void> | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();
  private resolveReady!: () => void;
  private rejectReady!: (err: unknown) => void;

  private constructor(private readonly options: ServerOptions) {
    this.config = options.config;
    this.logger = options.logger ?? createLogger({ level: options.config.log.level });
    this.metrics = createMetrics({ cluster: this.config.cluster !== undefined });
    this.authorizer = new Authorizer(this.config.auth);
    this.model = { state: 'loading', name: this.config.model };
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined);

    this.hub = new Hub({
      metrics: this.metrics,
      logger: this.logger.child({ component: 'ws' }),
      limits: { ...this.config.limits },
      getStream: (id) => this.manager.get(id),
      hello: () => this.hello(),
      slowCloseGraceMs: options.slowCloseGraceMs ?? 5000,
    });
    this.outputs = new DaemonOutputs(this.config.dataDir, (id) => this.manager.get(id)?.info().config, this.logger.child({ component: 'outputs' }));
    this.deps = {
      factory: options.pipelineFactory,
      publish: (ev) => {
        this.hub.publish(ev);
        this.outputs.publish(ev);
      },
      metrics: this.metrics,
      logger: this.logger,
      dataDir: this.config.dataDir,
      captionLog: { ...this.config.captionLog },
      resumeWindow: this.config.limits.resumeWindow,
      stopTimeoutMs: options.stopTimeoutMs ?? 5000,
    };
    this.manager = this.config.cluster
      ? new ClusterStreams(this.deps, this.config.limits.maxStreams, { publish: (ev) => this.hub.publish(ev), outputs: (ev) => this.outputs.publish(ev), config: () => this.config })
      : new StreamManager(this.deps, this.config.limits.maxStreams);
    this.routes = apiRoutes(this);
    this.httpServer = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.fail(res, err));
    });
    this.httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.httpServer.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    this.httpServer.headersTimeout = 15_000;
    this.httpServer.requestTimeout = 30_000;
  }

  /** Opens the stream logs, listens, then loads the model in the background and starts the streams. */
  static async start(options: ServerOptions): Promise<CasaServer> {
    const server = new CasaServer(options);
    await server.manager.init(server.config);
    await server.outputs.configure(server.config.outputs);
    await new Promise<void>((resolve, reject) => {
      server.httpServer.once('error', reject);
      server.httpServer.listen(server.config.listen.port, server.config.listen.host, () => {
        server.httpServer.off('error', reject);
        resolve();
      });
    });
    server.logger.info(
      { host: server.config.listen.host, port: server.port, streams: server.manager.ids(), dataDir: server.config.dataDir, version: VERSION },
      'casa-live serve listening',
    );
    server.pruneTimer = setInterval(() => void server.manager.pruneLogs(), PRUNE_INTERVAL_MS);
    server.pruneTimer.unref();
    void server.loadModel();
    return server;
  }

  get port(): number {
    const addr = this.httpServer.address();
    return typeof addr === 'object' && addr ? addr.port : this.config.listen.port;
  }

  get isClosing(): boolean {
    return this.closing !== undefined;
  }

  get uptimeSeconds(): number {
    return Math.round((Date.now() - this.startedAt) / 1000);
  }

  private async loadModel(): Promise<void> {
    const started = Date.now();
    try {
      const result = this.options.prepare ? await this.options.prepare(this.config) : { modelName: this.config.model };
      if (this.closing) return;
      this.model = { state: 'loaded', name: result.modelName, loadedAt: new Date().toISOString() };
      this.metrics.modelLoaded.set(1);
      this.logger.info({ model: result.modelName, ms: Date.now() - started }, 'model loaded');
      this.manager.startAll();
      this.resolveReady();
    } catch (err) {
      this.model = { state: 'failed', name: this.config.model, error: err instanceof Error ? err.message : String(err) };
      this.logger.fatal({ err, model: this.config.model }, 'model failed to load; no stream will start');
      this.rejectReady(err);
    }
  }

  private hello(): HelloEvent {
    const cluster = this.manager.cluster?.();
    return {
      type: 'hello',
      version: VERSION,
      streams: this.manager.ids(),
      model: this.model.name,
      fps: this.config.defaults.fps,
      resumeWindow: this.config.limits.resumeWindow,
      ...(cluster ? { node: cluster.node, owners: cluster.owners } : {}),
    };
  }

  /** Re-reads the config file and applies it: streams reconciled, auth and limits replaced. */
  async reload(): Promise<ReloadResult> {
    const file = this.config.configPath;
    if (!file) return { ok: false, error: 'this server was not started from a config file' };
    if (this.closing) return { ok: false, error: 'shutting down' };
    let next: ServeConfig;
    try {
      next = await loadConfig(file);
    } catch (err) {
      const problems = err instanceof ConfigInvalidError ? err.problems : undefined;
      const error = err instanceof Error ? err.message : String(err);
      this.logger.error({ problems: err instanceof ConfigInvalidError ? err.details : undefined, error }, 'config reload failed; keeping the running config');
      return problems ? { ok: false, error, problems } : { ok: false, error };
    }
    const restartNeeded: string[] = [];
    const old = this.config;
    if (next.listen.host !== old.listen.host || next.listen.port !== old.listen.port) restartNeeded.push('listen');
    if (next.dataDir !== old.dataDir) restartNeeded.push('dataDir');
    if (next.model !== old.model) restartNeeded.push('model');
    if (clusterNeedsRestart(old.cluster, next.cluster)) restartNeeded.push('cluster');
    if (restartNeeded.length) this.logger.warn({ fields: restartNeeded }, 'these config changes take effect only after a restart');
    next = { ...next, listen: old.listen, dataDir: old.dataDir };

    this.logger.level = next.log.level;
    this.authorizer = new Authorizer(next.auth);
    this.hub.setLimits({ ...next.limits });
    this.manager.setMaxStreams(next.limits.maxStreams);
    this.deps.captionLog = { ...next.captionLog };
    this.deps.resumeWindow = next.limits.resumeWindow;
    this.config = next;
    await this.outputs.configure(next.outputs);
    const result = await this.manager.applyConfig(next);
    this.logger.info({ ...result, restartNeeded }, 'config reloaded');
    return { ok: true, ...result, restartNeeded };
  }

  /**
   * Graceful stop: refuse new work, stop every stream (each finishes its frame in hand,
   * whose events are logged and sent), flush and close the logs, close clients with 1001.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      const t0 = Date.now();
      this.logger.info('shutting down');
      clearInterval(this.pruneTimer);
      const httpClosed = new Promise<void>((resolve) => this.httpServer.close(() => resolve()));
      this.httpServer.closeIdleConnections();
      await this.manager.closeAll('server shutting down');
      await this.outputs.close();
      await this.hub.closeAll(CLOSE_CODES.GOING_AWAY, 'server shutting down');
      this.httpServer.closeAllConnections();
      await Promise.race([httpClosed, new Promise((r) => setTimeout(r, 1000).unref())]);
      this.logger.info({ ms: Date.now() - t0 }, 'shutdown complete');
    })();
    return this.closing;
  }

  // ---- WebSocket upgrade ------------------------------------------------------------

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'http://localhost');
    const reject = (status: number, reason: string, message: string, headers: Record<string, string> = {}): void => {
      this.metrics.wsRejected.inc({ reason });
      this.logger.info({ remote: req.socket.remoteAddress, status, reason }, 'websocket upgrade refused');
      const body = JSON.stringify({ error: message }) + '\n';
      const lines = [
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}`,
        'Connection: close',
        'Content-Type: application/json',
        `Content-Length: ${Buffer.byteLength(body)}`,
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.end(lines.join('\r\n') + '\r\n\r\n' + body);
    };
    if (url.pathname !== WS_PATH && url.pathname !== WS_PATH_ALIAS) return reject(404, 'path', `no WebSocket endpoint at ${url.pathname}; use ${WS_PATH}`);
    if (this.closing) return reject(503, 'shutdown', 'server is shutting down');
    const origin = req.headers.origin;
    const allowed = this.config.auth.allowedOrigins;
    if (allowed.length > 0 && origin !== undefined && !allowed.includes(origin)) {
      return reject(403, 'origin', `origin ${origin} is not allowed`);
    }
    if (!satisfies(this.authorizer.roleOf(tokenOf(req, url)), 'viewer')) {
      return reject(401, 'auth', 'missing or invalid token (Authorization: Bearer <token> or ?token=)', { 'WWW-Authenticate': 'Bearer' });
    }
    if (this.hub.size >= this.config.limits.maxClients) {
      return reject(503, 'max_clients', `too many clients (limits.maxClients = ${this.config.limits.maxClients})`, { 'Retry-After': '5' });
    }
    this.hub.wss.handleUpgrade(req, socket, head, (ws) => {
      if (this.closing) {
        ws.close(CLOSE_CODES.GOING_AWAY, 'server shutting down');
        return;
      }
      this.hub.accept(ws, req);
    });
  }

  // ---- HTTP ---------------------------------------------------------------------------

  /** Routes a request through the table (src/server/routes.ts): match, check access once, handle. */
  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    res.setHeader('X-Content-Type-Options', 'nosniff');
    const { route, params } = matchRoute(this.routes, method, url.pathname);
    this.authorize(req, url, typeof route.access === 'function' ? route.access() : route.access);
    await route.handler({ req, res, url, method, params });
  }

  private authorize(req: IncomingMessage, url: URL, needed: Access): void {
    if (needed === 'public') return;
    const role = this.authorizer.roleOf(tokenOf(req, url));
    if (role === undefined) throw new HttpError(401, 'missing or invalid token (Authorization: Bearer <token>)');
    if (!satisfies(role, needed)) throw new HttpError(403, 'this token may not change streams (needs an auth.adminTokens token)');
  }

  private fail(res: ServerResponse, err: unknown): void {
    let status = 500;
    let message = 'internal error';
    let extra: Record<string, unknown> = {};
    if (err instanceof HttpError) {
      status = err.status;
      message = err.message;
      extra = err.extra;
      if (status === 401) res.setHeader('WWW-Authenticate', 'Bearer');
      if (status === 405 && typeof extra.allow === 'string') res.setHeader('Allow', extra.allow);
    } else if (err instanceof StreamExistsError || err instanceof StreamOwnershipError || err instanceof StreamLimitError) {
      status = 409;
      message = err.message;
    } else if (err instanceof StreamNotFoundError) {
      status = 404;
      message = err.message;
    } else {
      this.logger.error({ err }, 'http request failed');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const { allow: _a, ...rest } = extra;
    sendJson(res, status, { error: message, ...rest });
  }
}

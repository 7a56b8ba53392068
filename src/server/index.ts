/**
 * Entry points of `casa-live serve` and `casa-live config check` (the CLI wires them).
 */
import { exitCodeOf } from '../errors.js';
import { loadConfig, ConfigInvalidError, formatProblem } from '../config/load.js';
import { createLogger, type Logger } from '../logger.js';
import { CasaServer, type ReloadResult } from './server.js';
import type { PipelineFactory, PrepareHook } from '../pipeline/types.js';

export { CasaServer, VERSION, type ServerOptions, type ReloadResult } from './server.js';
export type { ModelState, StreamConfig, ServeConfig } from './types.js';
/** The pipeline contract the daemon consumes (owned by src/pipeline/types.ts). */
export type { CaptionPipeline, CaptionPipelineWithStats, PipelineFactory, PipelineStats, PrepareHook } from '../pipeline/types.js';
export { CLOSE_CODES, RESUME_REQUIRED_REASON, WS_PATH, clientMessageSchema, type ClientMessage, type ServerMessage, type SubscribedMessage, type PongMessage } from './protocol.js';
export type { StreamInfo } from './stream-runner.js';

export interface RunServeOptions {
  configPath: string;
  pipelineFactory: PipelineFactory;
  /** Loads the shared model once; /readyz reports it; streams start after it resolves. */
  prepare?: PrepareHook;
  /**
   * Install process signal handlers: SIGTERM/SIGINT → graceful stop and process.exit(0)
   * (1 if it could not finish in 9.5 s; a second signal exits at once), SIGHUP → reload.
   * A model that fails to load then also ends the process with the error's exit code.
   */
  signals?: boolean;
  /** Defaults to JSON on stdout at the config's log level. */
  logger?: Logger;
}

export interface ServeHandle {
  /** Graceful stop (idempotent). */
  close(): Promise<void>;
  /** The port actually listened on (config port 0 picks a free one). */
  port: number;
  /** Re-reads the config file (what SIGHUP does). */
  reload(): Promise<ReloadResult>;
  /** Resolves once the model is loaded and the streams started. */
  ready: Promise<void>;
  server: CasaServer;
}

const SHUTDOWN_DEADLINE_MS = 9500;

export async function runServe(opts: RunServeOptions): Promise<ServeHandle> {
  const config = await loadConfig(opts.configPath);
  const logger = opts.logger ?? createLogger({ level: config.log.level });
  // Deprecated field names and the like: logged once, before the server starts.
  for (const w of config.warnings) logger.warn({ config: config.configPath }, `config warning: ${formatProblem(w)}`);
  const server = await CasaServer.start({
    config,
    pipelineFactory: opts.pipelineFactory,
    ...(opts.prepare ? { prepare: opts.prepare } : {}),
    logger,
  });

  let removeSignals = (): void => undefined;
  if (opts.signals) {
    let stopping = false;
    const stop = (signal: string, code: number): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'stopping');
      const deadline = setTimeout(() => {
        logger.error({ deadlineMs: SHUTDOWN_DEADLINE_MS }, 'shutdown did not finish in time; exiting');
        process.exit(1);
      }, SHUTDOWN_DEADLINE_MS);
      deadline.unref();
      server.close().then(
        () => process.exit(code),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    const onTerm = (): void => stop('SIGTERM', 0);
    const onInt = (): void => stop('SIGINT', 0);
    const onHup = (): void => {
      logger.info({ signal: 'SIGHUP' }, 'reloading config');
      void server.reload();
    };
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGHUP', onHup);
    server.ready.catch((err: unknown) => stop('model-load-failed', exitCodeOf(err)));
    removeSignals = () => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      process.off('SIGHUP', onHup);
    };
  }

  return {
    close: async () => {
      await server.close();
      removeSignals();
    },
    port: server.port,
    reload: () => server.reload(),
    ready: server.ready,
    server,
  };
}

/**
 * `casa-live config check FILE`: validates without starting anything. Prints every problem
 * (field path, message, line) and returns the exit code: 0 valid, 2 invalid.
 */
export async function runConfigCheck(
  path: string,
  io: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream } = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  try {
    const config = await loadConfig(path);
    const enabled = config.streams.filter((s) => s.enabled).length;
    stdout.write(
      `${config.configPath ?? path}: ok (${config.streams.length} stream${config.streams.length === 1 ? '' : 's'}, ${enabled} enabled; ` +
        `listen ${config.listen.host}:${config.listen.port}; data ${config.dataDir}` +
        `${config.cluster ? `; cluster node ${config.cluster.nodeId}` : ''})\n`,
    );
    if (config.warnings.length > 0) {
      stderr.write(`${path}: ${config.warnings.length} warning${config.warnings.length === 1 ? '' : 's'}\n`);
      for (const w of config.warnings) stderr.write(`  ${formatProblem(w)}\n`);
    }
    return 0;
  } catch (err) {
    if (err instanceof ConfigInvalidError) {
      stderr.write(`${path}: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}\n`);
      for (const line of err.details) stderr.write(`  ${line}\n`);
    } else {
      stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    }
    return exitCodeOf(err);
  }
}

/** `casa-live serve --config FILE` and `casa-live config check FILE`. */
import { ConfigInvalidError } from '../config/load.js';
import { createDaemonHooks } from '../pipeline/daemon.js';
import { runConfigCheck, runServe } from '../server/index.js';
import type { CliIo } from './common.js';
import { releaseEarlySignals } from './signals.js';

/**
 * Starts the daemon with the real pipeline (ingest → caption session on the shared model).
 * It runs until SIGTERM / SIGINT, which exit the process (runServe's signal handling);
 * a config that cannot be loaded ends at once with every problem listed and exit code 2.
 * The config's warnings (deprecated field names) are logged once, at start (runServe).
 */
export async function runServeCli(args: { config: string }, io: Pick<CliIo, 'stdout' | 'stderr'>): Promise<number | undefined> {
  const hooks = createDaemonHooks();
  try {
    const handle = await runServe({ configPath: args.config, pipelineFactory: hooks.pipelineFactory, prepare: hooks.prepare, signals: true });
    // A model that cannot load ends the daemon (runServe exits with its code); say why on stderr too.
    handle.ready.catch((err: unknown) => {
      io.stderr.write(`casa-live: ${err instanceof Error ? err.message : String(err)}\n`);
    });
    // runServe's own SIGTERM / SIGINT / SIGHUP handling is in place: graceful stop from now on.
    releaseEarlySignals();
  } catch (err) {
    if (err instanceof ConfigInvalidError) {
      io.stderr.write(`casa-live: ${args.config}: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}\n`);
      for (const line of err.details) io.stderr.write(`  ${line}\n`);
      return err.exitCode;
    }
    throw err;
  }
  // Running: the process lives on in the server; signals end it.
  return undefined;
}

/** Validates the file (every problem listed, exit 2); a valid one's warnings follow on stderr. */
export function runConfigCheckCli(file: string, io: Pick<CliIo, 'stdout' | 'stderr'>): Promise<number> {
  return runConfigCheck(file, { stdout: io.stdout, stderr: io.stderr });
}

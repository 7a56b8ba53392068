/**
 * Signals before a command is ready for them. bin/casa-live.js installs a handler first thing
 * (Ctrl-C while node is still loading modules exits 130 at once); a command that handles
 * SIGINT / SIGTERM itself releases it once its own handlers are in place.
 */
const EARLY = Symbol.for('casa-live.early-signal-handler');

type Holder = { [EARLY]?: () => void };

/** Installs the early handler (idempotent): exit 130, nothing has been started yet. */
export function installEarlySignals(): void {
  const g = globalThis as Holder;
  if (g[EARLY]) return;
  const fn = (): void => process.exit(130);
  g[EARLY] = fn;
  process.on('SIGINT', fn);
  process.on('SIGTERM', fn);
}

/** Removes the early handler; the caller has installed its own. */
export function releaseEarlySignals(): void {
  const g = globalThis as Holder;
  const fn = g[EARLY];
  if (!fn) return;
  process.off('SIGINT', fn);
  process.off('SIGTERM', fn);
  delete g[EARLY];
}

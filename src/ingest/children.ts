/**
 * Every ffmpeg / ffprobe child the ingest layer starts is registered here, so that nothing
 * outlives the daemon: on process exit every child still alive is SIGKILLed.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();
let hooked = false;

export function trackChild(child: ChildProcess): void {
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const c of live) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    });
  }
  live.add(child);
  const forget = (): void => {
    live.delete(child);
  };
  child.once('exit', forget);
  child.once('error', forget);
}

/** Number of registered children that have not exited yet (for diagnostics and tests). */
export function liveChildCount(): number {
  return live.size;
}

/** True once the child has exited (or failed to spawn). */
export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null || child.pid === undefined;
}

/** SIGKILLs the child (if still running) and resolves once it has been reaped. */
export function killAndWait(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolveWait) => {
    const done = (): void => {
      child.off('exit', done);
      child.off('error', done);
      resolveWait();
    };
    child.once('exit', done);
    child.once('error', done);
    try {
      child.kill('SIGKILL');
    } catch {
      /* raced with exit */
    }
    if (hasExited(child)) done();
  });
}

export interface CaptureResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  spawnError?: Error;
}

/**
 * Runs a short helper (ffmpeg -version, ffprobe) to completion, SIGKILLing it after `timeoutMs`.
 * `onChild` receives the child so that a caller can kill it early.
 */
export function runCapture(
  file: string,
  args: string[],
  options: { timeoutMs: number; onChild?: (child: ChildProcess) => void },
): Promise<CaptureResult> {
  return new Promise((resolveRun) => {
    let child: ChildProcess;
    try {
      child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    } catch (err) {
      resolveRun({ code: null, signal: null, stdout: '', stderr: '', spawnError: err as Error });
      return;
    }
    trackChild(child);
    options.onChild?.(child);
    let stdout = '';
    let stderr = '';
    let spawnError: Error | undefined;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < 1_000_000) stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 1_000_000) stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.once('error', (err) => {
      spawnError = err;
      clearTimeout(timer);
      resolveRun({ code: null, signal: null, stdout, stderr, spawnError });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (!spawnError) resolveRun({ code, signal, stdout, stderr });
    });
  });
}

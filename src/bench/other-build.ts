/**
 * Another revision of casa-live, built from this checkout's git history so that a suite can
 * measure it in the same run as this build (B4: the engine before batching). Benchmarks on a
 * shared virtual machine move with its host (docs/benchmarks.md, B4), so a figure from an
 * earlier day is no baseline; the same measurement of the old engine, alternated with this
 * one's, is.
 *
 * The revision is checked out in a temporary git worktree, using this checkout's
 * node_modules, and compiled with this checkout's TypeScript; its own bench worker
 * (dist/bench/worker.js) then runs tasks with its own bundles. Needs git and the revision in
 * the history (a shallow clone may lack it: the caller falls back and says why).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The last commit before the batched engine: format-version-1 bundles, every graph run on
 * the main thread, one stream per run (B4's "before batching").
 */
export const BEFORE_BATCHING_REV = '4b3b6e2';

export interface OtherBuild {
  rev: string;
  /** The worktree: the revision's sources, models and dist/. */
  dir: string;
  /** Its bench worker, forked instead of this build's. */
  workerScript: string;
  /** Removes the worktree and its temporary directory. */
  close(): Promise<void>;
}

function run(cmd: string, args: readonly string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed: ${(stderr || stdout || err.message).trim().split('\n').slice(-3).join(' ')}`));
      else resolve(stdout);
    });
  });
}

/**
 * Checks out `rev` of the repository at `root` in a temporary worktree and builds it.
 * Rejects with the reason when it cannot (no git, no such revision, the build failed),
 * leaving nothing behind.
 */
export async function buildOtherRevision(root: string, rev: string, log: (line: string) => void): Promise<OtherBuild> {
  const git = (args: readonly string[]): Promise<string> => run('git', args, root, 60_000);
  await git(['rev-parse', '--verify', '--quiet', `${rev}^{commit}`]).catch(() => {
    throw new Error(`revision ${rev} is not in the git history of ${root} (a shallow clone, or no git repository)`);
  });
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tsc)) throw new Error(`${tsc} is missing: run "npm ci" first`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'casa-live-rev-'));
  const dir = path.join(tmp, rev);
  const close = async (): Promise<void> => {
    await git(['worktree', 'remove', '--force', dir]).catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
    await git(['worktree', 'prune']).catch(() => undefined);
  };
  try {
    log(`building revision ${rev} in a temporary worktree (${dir})`);
    await git(['worktree', 'add', '--detach', dir, rev]);
    symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
    await run(process.execPath, [tsc, '-p', 'tsconfig.json'], dir, 600_000);
    const workerScript = path.join(dir, 'dist', 'bench', 'worker.js');
    if (!existsSync(workerScript)) throw new Error(`revision ${rev} built no ${path.relative(dir, workerScript)}`);
    return { rev, dir, workerScript, close };
  } catch (err) {
    await close();
    throw err;
  }
}

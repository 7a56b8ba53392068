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
 * the history (a shallow clone may lack it: the caller falls back and says why). The
 * worktree is removed by close(), and on process exit (Ctrl-C) if close() did not run.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The last commit before the batched engine: format-version-1 bundles, every graph run on
 * the main thread, one stream per run (B4's "before batching").
 */
export const BEFORE_BATCHING_REV = '4b3b6e2';

export interface OtherBuild {
  rev: string;
  /** This package's root in the worktree: the revision's sources, models and dist/. */
  root: string;
  /** Its bench worker, forked instead of this build's. */
  workerScript: string;
  /** Removes the worktree and its temporary directory. */
  close(): Promise<void>;
}

function run(cmd: string, args: readonly string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed: ${(stderr || stdout || err.message).trim().split('\n').slice(-3).join(' ')}`));
      else resolve(stdout.trim());
    });
  });
}

/**
 * Removes a worktree and its temporary directory. Synchronous, so that the exit hook can run
 * it too; when git cannot remove it, the directory goes anyway and git forgets it (prune).
 */
function removeWorktree(top: string, dir: string, tmp: string): void {
  const git = (args: string[]): void => void execFileSync('git', args, { cwd: top, stdio: 'ignore', timeout: 30_000 });
  let removed = true;
  try {
    git(['worktree', 'remove', '--force', dir]);
  } catch {
    removed = false;
  }
  rmSync(tmp, { recursive: true, force: true });
  if (!removed) {
    try {
      git(['worktree', 'prune']);
    } catch {
      /* nothing left to do */
    }
  }
}

/**
 * Checks out `rev` of the git repository holding `root` (this package) in a temporary
 * worktree and builds it there. Rejects with the reason when it cannot (no git, no such
 * revision, the build failed), leaving nothing behind.
 */
export async function buildOtherRevision(root: string, rev: string, log: (line: string) => void): Promise<OtherBuild> {
  const top = await run('git', ['rev-parse', '--show-toplevel'], root, 30_000).catch(() => {
    throw new Error(`${root} is not in a git repository (or git is missing)`);
  });
  const git = (args: readonly string[]): Promise<string> => run('git', args, top, 60_000);
  await git(['rev-parse', '--verify', '--quiet', `${rev}^{commit}`]).catch(() => {
    throw new Error(`revision ${rev} is not in the git history of ${top} (a shallow clone?)`);
  });
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tsc)) throw new Error(`${tsc} is missing: run "npm ci" first`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'casa-live-rev-'));
  const dir = path.join(tmp, rev.replace(/[^A-Za-z0-9._-]/g, '_'));
  const onExit = (): void => removeWorktree(top, dir, tmp);
  process.on('exit', onExit);
  const close = async (): Promise<void> => {
    process.off('exit', onExit);
    removeWorktree(top, dir, tmp);
  };
  try {
    log(`building revision ${rev} in a temporary worktree (${dir})`);
    await git(['worktree', 'add', '--detach', dir, rev]);
    const otherRoot = path.join(dir, path.relative(realpathSync(top), realpathSync(root)));
    symlinkSync(path.join(root, 'node_modules'), path.join(otherRoot, 'node_modules'), 'dir');
    await run(process.execPath, [tsc, '-p', 'tsconfig.json'], otherRoot, 600_000);
    const workerScript = path.join(otherRoot, 'dist', 'bench', 'worker.js');
    if (!existsSync(workerScript)) throw new Error(`revision ${rev} built no ${path.relative(otherRoot, workerScript)}`);
    return { rev, root: otherRoot, workerScript, close };
  } catch (err) {
    await close();
    throw err;
  }
}

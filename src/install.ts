/**
 * Where casa-live is installed and what it runs besides Node, each rule in one place:
 * the package root (package.json, bin/, dist/, models/, tools/) and the Python interpreter
 * (the model worker's and the benchmarks' PyTorch side).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's root directory (the one holding package.json, bin/, dist/, models/, tools/). */
export function packageRoot(): string {
  // src/install.ts and dist/install.js are both one level below the root.
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
}

/** The Python casa-live runs: CASA_LIVE_PYTHON, else Debian's /usr/bin/python3, else python3 on PATH. */
export function pythonInterpreter(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.CASA_LIVE_PYTHON?.trim();
  if (fromEnv) return fromEnv;
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

/** Whether `python` is surely absent: a path that does not exist (a bare name is looked up on PATH when run). */
export function pythonMissing(python: string): boolean {
  return python.includes(path.sep) && !existsSync(python);
}

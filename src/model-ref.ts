/**
 * Model references: the one home of their syntax (DESIGN §8). Which engine runs a model
 * follows from its reference:
 *
 *   casa-tiny, models/x, /abs/dir   a bundle (docs/model-format.md): the ONNX engine, in process;
 *                                   a directory with a config.json and no casa.json is a local
 *                                   Hugging Face checkpoint: the worker engine (hf adapter)
 *   torch:<bundle name or path>     a bundle run by the worker in PyTorch (tests, comparison)
 *   hf:<org>/<name>                 a checkpoint on Hugging Face, e.g. hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC
 *                                   (a released model's name alone means kyutai/<name>)
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

export type WorkerAdapter = 'torch' | 'hf';

export type ModelRef =
  /** A bundle name or path (or a local Hugging Face directory: see isHfDir). */
  | { engine: 'onnx'; target: string }
  /** `target`: a bundle name or path (torch), a repo id or directory (hf). */
  | { engine: 'worker'; adapter: WorkerAdapter; target: string };

const SCHEMES: Record<string, WorkerAdapter> = { 'torch:': 'torch', 'hf:': 'hf' };

export function parseModelRef(ref: string): ModelRef {
  for (const [scheme, adapter] of Object.entries(SCHEMES)) {
    if (ref.startsWith(scheme)) return { engine: 'worker', adapter, target: ref.slice(scheme.length) };
  }
  return { engine: 'onnx', target: ref };
}

export function formatModelRef(ref: ModelRef): string {
  return ref.engine === 'onnx' ? ref.target : `${ref.adapter}:${ref.target}`;
}

/** A local Hugging Face checkpoint: a directory with a config.json and no casa.json. */
export function isHfDir(dir: string): boolean {
  try {
    return statSync(dir).isDirectory() && existsSync(path.join(dir, 'config.json')) && !existsSync(path.join(dir, 'casa.json'));
  } catch {
    return false;
  }
}

/** Whether the worker engine runs the model a (resolved) reference names: torch:, hf:, or a local Hugging Face directory. */
export function runsInWorker(ref: string): boolean {
  return parseModelRef(ref).engine === 'worker' || isHfDir(ref);
}

/**
 * The bundle directory of a (resolved) reference, whose manifest describes the model's input:
 * a bundle itself, or the bundle of torch:<bundle>; undefined for a Hugging Face model (hf:,
 * a local checkpoint), whose input size only its worker knows once the model is loaded.
 */
export function bundleDirOf(ref: string): string | undefined {
  const r = parseModelRef(ref);
  if (r.engine === 'worker') return r.adapter === 'torch' ? r.target : undefined;
  return isHfDir(ref) ? undefined : ref;
}

/** A reference that is a path (absolute, or with a "/", or starting with "."), not a bare name. */
export function isPathLike(ref: string): boolean {
  return path.isAbsolute(ref) || ref.includes('/') || ref.includes(path.sep) || ref.startsWith('.');
}

/**
 * Whether the model a reference names takes a prompt of its own: Hugging Face checkpoints
 * do, bundles do not (their prompt is fixed by training). `undefined` when a path names
 * nothing yet (loading will say what is wrong).
 */
export function refTakesPrompt(ref: string, baseDir: string): boolean | undefined {
  const r = parseModelRef(ref);
  if (r.engine === 'worker') return r.adapter === 'hf';
  if (!isPathLike(ref)) return false; // a bare name is a bundle in a models directory
  const dir = path.resolve(baseDir, ref);
  if (isHfDir(dir)) return true;
  return existsSync(dir) ? false : undefined;
}

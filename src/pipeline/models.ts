/**
 * Where model bundles are found, and the registry that loads each one once.
 *
 * - The embedded model is `<package root>/models/casa-tiny`, found from this module's URL
 *   (so it does not depend on the working directory); `CASA_LIVE_MODEL=DIR` replaces it.
 * - A model reference is a path (absolute, or containing a "/" or starting with ".") or a
 *   bare name. A name is looked up as `<base>/models/<name>` (base: the config file's
 *   directory, or the working directory for the CLI), then `<package root>/models/<name>`.
 *   The embedded model's name ("casa-tiny") means the embedded model, so CASA_LIVE_MODEL
 *   applies to it.
 * - Worker references (src/model-ref.ts): `torch:<bundle>` resolves its bundle by the rules
 *   above; `hf:<org>/<name>` is kept as it is; a local Hugging Face directory is a path.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { Model, loadModel, type CaptionModel, type LoadOptions, type ModelLoadOptions } from '../engine.js';
import { ModelError } from '../errors.js';
import { packageRoot } from '../install.js';
import { parseManifest, type Manifest } from '../model/manifest.js';
import { formatModelRef, isPathLike, parseModelRef, runsInWorker } from '../model-ref.js';

export const EMBEDDED_MODEL_NAME = 'casa-tiny';

export { packageRoot };

export function packageModelsDir(): string {
  return path.join(packageRoot(), 'models');
}

/** The default model bundle directory: CASA_LIVE_MODEL, else <package root>/models/casa-tiny. */
export function embeddedModelDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.CASA_LIVE_MODEL;
  if (fromEnv !== undefined && fromEnv.trim() !== '') return path.resolve(fromEnv);
  return path.join(packageModelsDir(), EMBEDDED_MODEL_NAME);
}

function isBundleDir(dir: string): boolean {
  try {
    return statSync(dir).isDirectory() && existsSync(path.join(dir, 'casa.json'));
  } catch {
    return false;
  }
}

/**
 * Resolves a model reference (see the module comment) to a bundle directory. Throws a
 * ModelError naming the places looked at when a bare name is found nowhere. A path is
 * returned as is (loading it reports what is wrong with it).
 */
export function resolveModelRef(ref: string | undefined, baseDir: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): string {
  if (ref === undefined || ref === '') return embeddedModelDir(env);
  const parsed = parseModelRef(ref);
  if (parsed.engine === 'worker') {
    if (parsed.adapter === 'torch') return formatModelRef({ ...parsed, target: resolveModelRef(parsed.target, baseDir, env) });
    // hf:<org>/<name> is a repo id; hf:./dir or hf:/abs/dir a local checkpoint
    const local = path.isAbsolute(parsed.target) || parsed.target.startsWith('.');
    return local ? formatModelRef({ ...parsed, target: path.resolve(baseDir, parsed.target) }) : ref;
  }
  if (isPathLike(ref)) return path.resolve(baseDir, ref);
  const candidates = [path.join(baseDir, 'models', ref)];
  if (ref === EMBEDDED_MODEL_NAME) candidates.unshift(embeddedModelDir(env));
  candidates.push(path.join(packageModelsDir(), ref));
  for (const c of candidates) if (isBundleDir(c)) return c;
  if (ref === EMBEDDED_MODEL_NAME) return embeddedModelDir(env);
  throw new ModelError(
    `Model "${ref}" was not found (looked in ${[...new Set(candidates)].join(', ')}); give a bundle directory path or run "casa-live models" to list the installed ones.`,
  );
}

/** A ModelError for a missing default model, with what to do about it. */
export function describeMissingModel(dir: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (isBundleDir(dir) || dir !== embeddedModelDir(env)) return undefined;
  if (env.CASA_LIVE_MODEL !== undefined && env.CASA_LIVE_MODEL.trim() !== '') {
    return existsSync(dir)
      ? `CASA_LIVE_MODEL names ${dir}, which is not a casa-live model bundle (it has no casa.json).`
      : `CASA_LIVE_MODEL names ${dir}, which does not exist.`;
  }
  return `The embedded model is not installed (${dir} has no casa.json); pass --model DIR, set CASA_LIVE_MODEL, or build it with "npm run model:build".`;
}

/** Loads a model, turning the engine's "file: problem" messages into one sentence. */
export async function loadModelDir(dir: string, opts: LoadOptions = {}, env: NodeJS.ProcessEnv = process.env): Promise<Model> {
  const missing = describeMissingModel(dir, env);
  if (missing) throw new ModelError(missing);
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new ModelError(`Model bundle directory ${dir} does not exist.`);
  }
  if (!st.isDirectory()) throw new ModelError(`Model bundle ${dir} is not a directory.`);
  if (!existsSync(path.join(dir, 'casa.json'))) {
    throw new ModelError(`${dir} is not a casa-live model bundle: it has no casa.json.`);
  }
  try {
    return await Model.load(dir, opts);
  } catch (err) {
    if (err instanceof ModelError) {
      const msg = err.message.trim();
      const sentence = /^model bundle|^the model/i.test(msg) ? msg : `Cannot load the model bundle: ${msg}`;
      throw new ModelError(/[.!?]$/.test(sentence) ? sentence : `${sentence}.`, { cause: err, details: err.details });
    }
    throw err;
  }
}

/**
 * Loads a resolved reference (see resolveModelRef) with the engine it names: a bundle
 * directory as loadModelDir does; a worker reference or a local Hugging Face directory by
 * starting the model worker (its errors are already one sentence).
 */
export async function loadModelRef(ref: string, opts: ModelLoadOptions = {}, env: NodeJS.ProcessEnv = process.env): Promise<CaptionModel> {
  const { worker, ...onnx } = opts;
  if (runsInWorker(ref)) return loadModel(ref, { worker: { env, ...(worker ?? {}) } });
  // The ONNX engine's options go to its inference threads (structured clone): nothing else.
  return loadModelDir(ref, onnx, env);
}

// ---------------------------------------------------------------- listing

export interface BundleListing {
  dir: string;
  /** Where it was found: "embedded", "CASA_LIVE_MODEL", or the models directory. */
  where: string;
  isDefault: boolean;
  ok: boolean;
  /** The manifest's problems (or why it could not be read) when not ok. */
  problem?: string;
  manifest?: Manifest;
  /** eval.json of the bundle, when present. */
  evaluation?: Record<string, unknown>;
}

/** Reads a bundle's manifest (and eval.json) without loading the graphs. */
export function describeBundle(dir: string, where: string, defaultDir: string): BundleListing {
  const base = { dir, where, isDefault: samePath(dir, defaultDir) };
  const file = path.join(dir, 'casa.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    return { ...base, ok: false, problem: `casa.json: ${(err as Error).message}` };
  }
  const parsed = parseManifest(raw);
  if (!parsed.ok) return { ...base, ok: false, problem: `casa.json: ${parsed.problems.join('; ')}` };
  let evaluation: Record<string, unknown> | undefined;
  try {
    const e = JSON.parse(readFileSync(path.join(dir, 'eval.json'), 'utf8')) as unknown;
    if (e && typeof e === 'object' && !Array.isArray(e)) evaluation = e as Record<string, unknown>;
  } catch {
    /* no eval.json */
  }
  return { ...base, ok: true, manifest: parsed.manifest, ...(evaluation ? { evaluation } : {}) };
}

function samePath(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return path.resolve(a) === path.resolve(b);
  }
}

/**
 * Every bundle found: the embedded one (or CASA_LIVE_MODEL), then the subdirectories with a
 * casa.json of each models directory (<package root>/models, ./models, and `extraDirs`).
 */
export function listBundles(extraDirs: string[] = [], env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): BundleListing[] {
  const defaultDir = embeddedModelDir(env);
  const out: BundleListing[] = [];
  const seen = new Set<string>();
  const add = (dir: string, where: string): void => {
    let key: string;
    try {
      key = realpathSync(dir);
    } catch {
      key = path.resolve(dir);
    }
    if (seen.has(key)) return;
    seen.add(key);
    out.push(describeBundle(dir, where, defaultDir));
  };
  if (isBundleDir(defaultDir)) add(defaultDir, env.CASA_LIVE_MODEL ? 'CASA_LIVE_MODEL' : 'embedded');
  const dirs = [packageModelsDir(), path.join(cwd, 'models'), ...extraDirs.map((d) => path.resolve(cwd, d))];
  for (const d of dirs) {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      continue;
    }
    if (isBundleDir(d)) add(d, path.dirname(d));
    for (const n of names) {
      const sub = path.join(d, n);
      if (isBundleDir(sub)) add(sub, d);
    }
  }
  return out;
}

// ---------------------------------------------------------------- registry

interface Entry {
  dir: string;
  promise: Promise<CaptionModel>;
  refs: number;
  pinned: boolean;
  idleTimer?: NodeJS.Timeout;
}

export interface ModelRegistryOptions {
  loadOptions?: ModelLoadOptions;
  /** An unpinned model nobody uses is released after this long (default 60 s). */
  idleReleaseMs?: number;
  /** Replaces the loader (tests). */
  load?: (dir: string, opts: ModelLoadOptions) => Promise<CaptionModel>;
}

/**
 * Loads each bundle directory once and shares the Model between streams. The daemon's
 * main model is pinned; a stream's own model is kept while a pipeline uses it and released
 * after a while unused. A failed load is forgotten, so the next attempt retries.
 */
export class ModelRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly opts: ModelRegistryOptions;

  constructor(opts: ModelRegistryOptions = {}) {
    this.opts = opts;
  }

  private key(dir: string): string {
    if (parseModelRef(dir).engine === 'worker') return dir;
    try {
      return realpathSync(dir);
    } catch {
      return path.resolve(dir);
    }
  }

  /** Loads (or reuses) the model of `dir`; pinned models are never released before closeAll(). */
  load(dir: string, pin = false): Promise<CaptionModel> {
    const key = this.key(dir);
    let e = this.entries.get(key);
    if (!e) {
      const loader = this.opts.load ?? loadModelRef;
      const entry: Entry = { dir, promise: loader(dir, this.opts.loadOptions ?? {}), refs: 0, pinned: pin };
      entry.promise.catch(() => {
        if (this.entries.get(key) === entry) this.entries.delete(key);
      });
      this.entries.set(key, entry);
      e = entry;
    }
    if (pin) e.pinned = true;
    return e.promise;
  }

  /** Takes a reference on the model of `dir` for one pipeline; call `release` when it ends. */
  acquire(dir: string): { model: Promise<CaptionModel>; release: () => void } {
    const model = this.load(dir);
    const key = this.key(dir);
    const e = this.entries.get(key);
    if (e) {
      e.refs++;
      if (e.idleTimer) clearTimeout(e.idleTimer);
      e.idleTimer = undefined;
    }
    let released = false;
    return {
      model,
      release: () => {
        if (released || !e) return;
        released = true;
        e.refs--;
        if (e.refs <= 0 && !e.pinned && this.entries.get(key) === e) {
          e.idleTimer = setTimeout(() => {
            if (e.refs > 0 || this.entries.get(key) !== e) return;
            this.entries.delete(key);
            void e.promise.then((m) => m.release()).catch(() => undefined);
          }, this.opts.idleReleaseMs ?? 60_000);
          e.idleTimer.unref();
        }
      },
    };
  }

  /** Directories of the models currently loaded or loading. */
  get loaded(): string[] {
    return [...this.entries.values()].map((e) => e.dir);
  }

  async closeAll(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.allSettled(
      all.map(async (e) => {
        if (e.idleTimer) clearTimeout(e.idleTimer);
        const m = await e.promise;
        await m.release();
      }),
    );
  }
}

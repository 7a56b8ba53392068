/**
 * Loads a model bundle from disk (docs/model-format.md) and checks it completely before
 * the first frame: manifest schema and format version, every file, the tokenizer against
 * the vocabulary and special tokens, and every graph's input/output names, element types
 * and shapes against what the manifest implies. Anything wrong becomes one ModelError that
 * names the file and what is wrong.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { ModelError } from '../errors.js';
import {
  CasaBatchDecoderGraph,
  CasaDecoderGraph,
  CasaKvGraph,
  graphSessions,
  InsertionDecoderGraph,
  VisionGraph,
  type BundleGraphs,
} from './graphs.js';
import {
  expectedGraphs,
  formatShape,
  isBatchable,
  parseManifest,
  type GraphName,
  type GraphSpec,
  type Manifest,
} from './manifest.js';
import { BundleTokenizer } from './tokenizer.js';

export type ExecutionProvider = 'cpu' | 'cuda';

export interface LoadOptions {
  /** onnxruntime execution provider (default 'cpu'). 'cuda' needs onnxruntime-node's CUDA 12 libraries. */
  executionProvider?: ExecutionProvider;
  /** CUDA device (default 0). */
  deviceId?: number;
  /**
   * Threads onnxruntime uses inside one graph run (default 1). With the tiny models a second
   * thread makes runs slower on a 2-core machine; larger models want more (see
   * docs/architecture.md §Batching and threads).
   */
  intraOpNumThreads?: number;
  /** Threads across independent graph nodes (default 1). */
  interOpNumThreads?: number;
  /**
   * The batched engine (docs/architecture.md §Batching): graph runs in worker threads, the
   * steps of many streams in one run. Default: on for bundles that support it (format
   * version 2, fusion casa). `false`: the unbatched engine, one stream per run on the
   * calling thread (version-1 and insertion bundles always run so).
   */
  batch?: false | BatchOptions;
}

export interface BatchOptions {
  /** Most streams in one graph run (default 64). 1: one stream per run, still off the main thread. */
  maxSize?: number;
  /** How long a run waits for the other streams inside a frame to submit their step (ms, default 2). */
  gatherMs?: number;
  /**
   * How long a frame's first step waits for other streams' frames, so that streams whose
   * frames arrive at different moments share the frame's runs (ms, default 80; 0: frames
   * start at once). Only in a worker serving at least 16 streams (scheduler.ts).
   */
  frameGatherMs?: number;
  /** Inference worker threads; streams are spread over them (default one per core, at most 4). */
  workers?: number;
}

export interface BundleFiles {
  manifest: string;
  tokenizer: string;
  vision: string;
  decoder: string;
  casaKv?: string;
}

/** A bundle's manifest, files and tokenizer, checked; its graphs not loaded. */
export interface BundleMeta {
  dir: string;
  manifest: Manifest;
  files: BundleFiles;
  tokenizer: BundleTokenizer;
  /** Token ids of the manifest's prompt pieces. */
  promptIds: number[];
  frameOpeningIds: number[];
}

export interface Bundle extends BundleMeta {
  /** The checked graphs, typed by the bundle's fusion. */
  graphs: BundleGraphs;
}

function readJson(file: string, what: string): unknown {
  if (!existsSync(file)) throw new ModelError(`${file}: file not found; ${what}`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ModelError(`${file}: cannot be read (${(err as Error).message})`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ModelError(`${file}: not valid JSON (${(err as Error).message}); re-export the bundle`, { cause: err });
  }
}

export function readManifest(dir: string): { manifest: Manifest; file: string } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ModelError(`${dir}: model bundle directory not found`);
  }
  const file = path.join(dir, 'casa.json');
  const raw = readJson(file, 'this is not a casa-live model bundle');
  const parsed = parseManifest(raw);
  if (!parsed.ok) throw new ModelError(`${file}: ${parsed.problems.join('; ')}`);
  return { manifest: parsed.manifest, file };
}

function bundleFile(dir: string, name: string, field: string): string {
  const file = path.join(dir, name);
  const rel = path.relative(path.resolve(dir), path.resolve(file));
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new ModelError(`${path.join(dir, 'casa.json')}: files.${field} "${name}" points outside the bundle`);
  }
  if (!existsSync(file) || !statSync(file).isFile()) {
    throw new ModelError(`${file}: file not found (casa.json files.${field}); the bundle is incomplete`);
  }
  return file;
}

function loadTokenizer(file: string, m: Manifest): { tokenizer: BundleTokenizer; promptIds: number[]; frameOpeningIds: number[] } {
  const json = readJson(file, 'the bundle is incomplete');
  let tokenizer: BundleTokenizer;
  try {
    tokenizer = new BundleTokenizer(json);
  } catch (err) {
    throw new ModelError(`${file}: not a usable Hugging Face tokenizer (${(err as Error).message})`, { cause: err });
  }
  const V = m.decoder.vocabSize;
  if (tokenizer.size !== V || tokenizer.idLimit !== V) {
    throw new ModelError(
      `${file}: the tokenizer has ${tokenizer.size} tokens (ids up to ${tokenizer.idLimit - 1}) but casa.json decoder.vocabSize is ${V}; the tokenizer does not belong to this model`,
    );
  }
  const specials: [string, string, number][] = [
    ['prompt.eos', m.prompt.eos, m.tokens.eos],
    ['prompt.preImage', m.prompt.preImage, m.tokens.preImage],
    ['prompt.postImage', m.prompt.postImage, m.tokens.postImage],
  ];
  for (const [field, text, id] of specials) {
    const got = tokenizer.tokenToId(text);
    if (got !== id) {
      throw new ModelError(
        `${file}: token ${JSON.stringify(text)} (casa.json ${field}) is ${got === undefined ? 'not in the vocabulary' : `id ${got}`} but casa.json tokens say ${id}; the tokenizer does not belong to this model`,
      );
    }
  }
  let promptIds: number[];
  let frameOpeningIds: number[];
  try {
    promptIds = tokenizer.encode(m.prompt.text);
    frameOpeningIds = tokenizer.encode(m.prompt.frameOpening);
  } catch (err) {
    throw new ModelError(`${file}: the tokenizer cannot encode the prompt (${(err as Error).message})`, { cause: err });
  }
  if (promptIds.length === 0) throw new ModelError(`${file}: the manifest's prompt.text encodes to no tokens`);
  return { tokenizer, promptIds, frameOpeningIds };
}

/** Where onnxruntime-node keeps its native libraries (the CUDA provider is installed there). */
function ortBinaryDir(): string {
  const require = createRequire(import.meta.url);
  const main = require.resolve('onnxruntime-node');
  return path.join(path.dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

function sessionOptions(opts: LoadOptions): InferenceSession.SessionOptions {
  const provider = opts.executionProvider ?? 'cpu';
  const intra = opts.intraOpNumThreads ?? 1;
  const inter = opts.interOpNumThreads ?? 1;
  if (!Number.isInteger(intra) || intra < 0) throw new ModelError(`intraOpNumThreads must be an integer ≥ 0, got ${intra}`);
  if (!Number.isInteger(inter) || inter < 0) throw new ModelError(`interOpNumThreads must be an integer ≥ 0, got ${inter}`);
  const base: InferenceSession.SessionOptions = {
    intraOpNumThreads: intra,
    interOpNumThreads: inter,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    logSeverityLevel: 3,
    // Intra-op threads sleep between runs instead of spinning: the cores are shared with
    // the other workers, ffmpeg and the event loop.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  if (provider === 'cpu') return { ...base, executionProviders: ['cpu'] };
  if (provider === 'cuda') {
    const dir = ortBinaryDir();
    const lib = path.join(dir, process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so');
    if (!existsSync(lib)) {
      throw new ModelError(
        `execution provider "cuda" is not available: onnxruntime-node's CUDA libraries are not installed (${lib} is missing); reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 on a machine with CUDA 12 and cuDNN 9, or use the cpu provider`,
      );
    }
    return { ...base, executionProviders: [{ name: 'cuda', deviceId: opts.deviceId ?? 0 }, 'cpu'] };
  }
  throw new ModelError(`unknown execution provider "${String(provider)}"; use "cpu" or "cuda"`);
}

async function createSession(file: string, options: InferenceSession.SessionOptions, provider: ExecutionProvider): Promise<InferenceSession> {
  try {
    return await InferenceSession.create(file, options);
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    if (provider === 'cuda' && /cuda|cudnn|providers_cuda|libcu/i.test(msg)) {
      throw new ModelError(
        `${file}: the cuda execution provider failed to start (${msg.split('\n')[0]}); check that CUDA 12 and cuDNN 9 are installed, or use the cpu provider`,
        { cause: err },
      );
    }
    throw new ModelError(
      `${file}: onnxruntime cannot load this graph (${msg.split('\n')[0]}); the file is truncated or corrupt — re-export the bundle`,
      { cause: err },
    );
  }
}

interface MetaTensor {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: readonly (number | string)[];
}

/** Checks one graph's inputs and outputs against the format; throws a ModelError naming the tensor. */
export function checkGraph(
  file: string,
  spec: GraphSpec,
  inputs: readonly MetaTensor[],
  outputs: readonly MetaTensor[],
  version: number,
): void {
  const side = (kind: 'input' | 'output', want: GraphSpec['inputs'], got: readonly MetaTensor[]): void => {
    const byName = new Map(got.map((t) => [t.name, t]));
    for (const w of want) {
      const g = byName.get(w.name);
      if (!g) {
        throw new ModelError(
          `${file}: ${kind} "${w.name}" is missing (the graph has ${kind}s ${got.map((t) => `"${t.name}"`).join(', ')}); re-export the bundle`,
        );
      }
      if (!g.isTensor || g.type !== w.type) {
        throw new ModelError(`${file}: ${kind} "${w.name}" is ${g.isTensor ? g.type : 'not a tensor'} but the format needs ${w.type}; re-export the bundle`);
      }
      const shape = g.shape ?? [];
      const ok =
        shape.length === w.shape.length &&
        w.shape.every((d, i) => {
          const gd = shape[i];
          // A dimension the runtime varies must be dynamic in the graph; a fixed one must match (or be dynamic).
          return d === null ? typeof gd === 'string' : typeof gd === 'string' || gd === d;
        });
      if (!ok) {
        throw new ModelError(
          `${file}: ${kind} "${w.name}" has shape ${formatShape(shape)} but the manifest needs ${formatShape(w.shape)}; re-export the bundle`,
        );
      }
    }
    const known = new Set(want.map((w) => w.name));
    const extra = got.filter((t) => !known.has(t.name));
    if (extra.length) {
      throw new ModelError(
        `${file}: unexpected ${kind} ${extra.map((t) => `"${t.name}"`).join(', ')} (not in format version ${version}); re-export the bundle`,
      );
    }
  };
  side('input', spec.inputs, inputs);
  side('output', spec.outputs, outputs);
}

/** Reads and checks a bundle's manifest, files and tokenizer (not its graphs). */
export function loadBundleMeta(dir: string): BundleMeta {
  const { manifest, file: manifestFile } = readManifest(dir);
  const files: BundleFiles = {
    manifest: manifestFile,
    tokenizer: bundleFile(dir, manifest.files.tokenizer, 'tokenizer'),
    vision: bundleFile(dir, manifest.files.vision, 'vision'),
    decoder: bundleFile(dir, manifest.files.decoder, 'decoder'),
  };
  if (manifest.fusion === 'casa') files.casaKv = bundleFile(dir, manifest.files.casaKv as string, 'casaKv');
  return { dir, manifest, files, ...loadTokenizer(files.tokenizer, manifest) };
}

/**
 * Creates the onnxruntime sessions of a bundle's graphs and checks each against the format;
 * on any problem throws a ModelError and releases what it created. (The batched engine's
 * workers call this with the manifest and files the main thread checked.)
 */
export async function openGraphs(manifest: Manifest, files: BundleFiles, opts: LoadOptions = {}): Promise<BundleGraphs> {
  const options = sessionOptions(opts);
  const provider = opts.executionProvider ?? 'cpu';
  const specs = expectedGraphs(manifest);
  const created: InferenceSession[] = [];
  try {
    const open = async (name: GraphName, file: string): Promise<InferenceSession> => {
      const s = await createSession(file, options, provider);
      created.push(s);
      const spec = specs[name];
      if (spec) checkGraph(file, spec, s.inputMetadata as readonly MetaTensor[], s.outputMetadata as readonly MetaTensor[], manifest.formatVersion);
      return s;
    };
    const vision = new VisionGraph(await open('vision', files.vision), manifest.image.width, manifest.image.height);
    if (manifest.fusion === 'insertion') {
      return { fusion: 'insertion', vision, decoder: new InsertionDecoderGraph(await open('decoder', files.decoder)) };
    }
    const casaKv = new CasaKvGraph(await open('casaKv', files.casaKv as string));
    const session = await open('decoder', files.decoder);
    const { layers, kvHeads, headDim, casaLayers } = manifest.decoder;
    const decoder = isBatchable(manifest)
      ? new CasaBatchDecoderGraph(session, layers, kvHeads, headDim, casaLayers.length)
      : new CasaDecoderGraph(session);
    return { fusion: 'casa', vision, casaKv, decoder };
  } catch (err) {
    await Promise.allSettled(created.map((s) => s.release()));
    throw err;
  }
}

/** Loads and validates a bundle: its manifest, files, tokenizer and graphs. */
export async function loadBundle(dir: string, opts: LoadOptions = {}): Promise<Bundle> {
  const meta = loadBundleMeta(dir);
  return { ...meta, graphs: await openGraphs(meta.manifest, meta.files, opts) };
}

/** Releases the graphs' onnxruntime sessions (errors ignored: nothing more can be done with them). */
export async function releaseGraphs(graphs: BundleGraphs): Promise<void> {
  await Promise.allSettled(graphSessions(graphs).map((s) => s.release()));
}

/** Releases the bundle's onnxruntime sessions. */
export function releaseBundle(bundle: Bundle): Promise<void> {
  return releaseGraphs(bundle.graphs);
}

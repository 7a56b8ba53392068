/** `casa-live models` (list the bundles found) and `casa-live models check DIR` (validate one). */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { WorkerModel, type CaptionModel, type Manifest, type Model } from '../engine.js';
import { ModelError } from '../errors.js';
import { runParity, type ParityResult } from '../harness/parity.js';
import { runsInWorker } from '../model-ref.js';
import { describeBundle, embeddedModelDir, listBundles, loadModelDir, loadModelRef, resolveModelRef, type BundleListing } from '../pipeline/models.js';
import type { CliIo } from './common.js';

/** A short figure from eval.json for the listing (frame exact match, when the bundle has it). */
function evalFigure(e: Record<string, unknown> | undefined): string | undefined {
  if (!e) return undefined;
  const pick = (obj: unknown, keys: string[]): number | undefined => {
    if (!obj || typeof obj !== 'object') return undefined;
    for (const k of keys) {
      const v = (obj as Record<string, unknown>)[k];
      if (typeof v === 'number') return v;
    }
    return undefined;
  };
  const keys = ['frameExactMatch', 'frame_exact_match', 'exactMatch', 'exact_match', 'accuracy'];
  const v = pick(e, keys) ?? pick(e.test, keys) ?? pick(e.heldOut, keys) ?? pick(e.metrics, keys);
  if (v === undefined) return undefined;
  return `exact match ${(v <= 1 ? v * 100 : v).toFixed(1)}%`;
}

function describe(b: BundleListing): string {
  if (!b.ok || !b.manifest) return `invalid: ${b.problem ?? 'unreadable'}`;
  const m = b.manifest;
  const parts = [
    m.fusion,
    `${m.image.width}x${m.image.height}`,
    `${m.image.tokensPerFrame} image tokens/frame`,
    `${m.decoder.layers} layers`,
    `vocab ${m.decoder.vocabSize}`,
  ];
  const ev = evalFigure(b.evaluation);
  if (ev) parts.push(ev);
  return parts.join(', ');
}

export function runModelsList(opts: { dirs?: string[]; json?: boolean }, io: CliIo): number {
  const found = listBundles(opts.dirs ?? [], io.env);
  const defaultDir = embeddedModelDir(io.env);
  if (opts.json) {
    io.stdout.write(
      `${JSON.stringify(
        {
          default: defaultDir,
          bundles: found.map((b) => ({
            name: b.manifest?.name ?? path.basename(b.dir),
            dir: b.dir,
            where: b.where,
            default: b.isDefault,
            ok: b.ok,
            ...(b.problem ? { problem: b.problem } : {}),
            ...(b.manifest ? { fusion: b.manifest.fusion, image: { width: b.manifest.image.width, height: b.manifest.image.height } } : {}),
            ...(b.evaluation ? { eval: b.evaluation } : {}),
          })),
        },
        null,
        2,
      )}\n`,
    );
    return 0;
  }
  if (found.length === 0) {
    io.stdout.write(`No model bundles found. The embedded model would be at ${defaultDir}; build it with "npm run model:build", or pass --dir DIR.\n`);
    return 0;
  }
  if (!found.some((b) => b.isDefault)) io.stdout.write(`default model ${defaultDir}: not installed\n`);
  for (const b of found) {
    const name = b.manifest?.name ?? path.basename(b.dir);
    io.stdout.write(`${b.isDefault ? '*' : ' '} ${name.padEnd(16)} ${describe(b)}\n    ${b.dir}${b.isDefault ? '  (default)' : ''}\n`);
  }
  return 0;
}

/** What `models check` found: the load and test-frame timings, the test caption, the parity replay. */
interface CheckResult {
  loadMs: number;
  frameMs: number;
  text: string;
  parity: ParityResult | undefined;
}

/**
 * Loads the bundle completely (manifest, tokenizer, every graph's inputs and outputs against
 * the manifest), replays its parity fixtures against the PyTorch reference logits (when the
 * bundle has fixtures/), and captions one grey frame through a real session. A worker model
 * (torch:, hf:, a Hugging Face directory) is checked through the model worker instead.
 */
export async function runModelsCheck(opts: { dir: string; json?: boolean }, io: CliIo): Promise<number> {
  const dir = resolveModelRef(opts.dir, process.cwd(), io.env);
  if (runsInWorker(dir)) return runWorkerModelCheck(dir, opts, io);
  const listing = describeBundle(dir, 'check', embeddedModelDir(io.env));
  const t0 = performance.now();
  const model = await loadModelDir(dir, {}, io.env);
  const loadMs = performance.now() - t0;
  let result: CheckResult;
  try {
    const parity = await checkParity(dir, model);
    result = { loadMs, parity, ...(await captionTestFrame(model)) };
  } catch (err) {
    if (err instanceof ModelError) throw err;
    throw new ModelError(`The model bundle ${dir} loads but cannot caption a frame (${(err as Error).message}).`, { cause: err });
  } finally {
    await model.release();
  }
  io.stdout.write(opts.json ? checkJson(dir, model.manifest, result, listing) : checkReport(dir, model.manifest, result, listing));
  return 0;
}

/** The bundle's own fixtures: the runtime's incremental path against the PyTorch reference. */
async function checkParity(dir: string, model: Model): Promise<ParityResult | undefined> {
  if (!existsSync(path.join(dir, 'fixtures', 'session.json'))) return undefined;
  const parity = await runParity(dir, { model });
  if (!parity.pass) {
    const why =
      parity.tokenizationMismatches.length > 0
        ? `the tokenizer splits ${JSON.stringify(parity.tokenizationMismatches[0]?.text)} differently from the reference`
        : `max |Δlogit| ${parity.maxAbsDiff.toExponential(2)} exceeds the tolerance ${parity.tolerance} (step ${parity.worstStep})`;
    throw new ModelError(`The model bundle ${dir} does not reproduce its PyTorch reference fixtures: ${why}.`);
  }
  return parity;
}

/**
 * A worker model: the worker started and the model loaded (Python packages, GPU, token and
 * files checked there), then one grey frame captioned through a real session. The bundle's
 * parity fixtures are the ONNX engine's; `models check <bundle>` replays them.
 */
async function runWorkerModelCheck(ref: string, opts: { json?: boolean }, io: CliIo): Promise<number> {
  const t0 = performance.now();
  const model = await loadModelRef(ref, {}, io.env);
  const loadMs = performance.now() - t0;
  try {
    const test = await captionTestFrame(model).catch((err: unknown) => {
      if (err instanceof ModelError) throw err;
      throw new ModelError(`The model ${ref} loads in the worker but cannot caption a frame (${(err as Error).message}).`, { cause: err });
    });
    const r = { ref, model, loadMs, ...test, ...(model instanceof WorkerModel ? { device: `${model.info.device}, ${model.info.dtype}` } : {}) };
    io.stdout.write(opts.json ? workerCheckJson(r) : workerCheckReport(r));
    return 0;
  } finally {
    await model.release();
  }
}

/** What the check of a worker model found. */
interface WorkerCheck {
  ref: string;
  model: CaptionModel;
  loadMs: number;
  frameMs: number;
  text: string;
  /** Where and in which precision the worker runs the model. */
  device?: string;
}

function workerCheckJson(r: WorkerCheck): string {
  const { model } = r;
  const fields = { ok: true, ref: r.ref, engine: 'worker', name: model.name, fusion: model.fusion, image: model.image, fps: model.fps };
  const more = { acceptsPrompt: model.acceptsPrompt, ...(r.device ? { device: r.device } : {}), loadMs: Math.round(r.loadMs), frameMs: Math.round(r.frameMs), caption: r.text };
  return `${JSON.stringify({ ...fields, ...more }, null, 2)}\n`;
}

function workerCheckReport(r: WorkerCheck): string {
  const { model, text } = r;
  return [
    `${r.ref}: ok (model worker)`,
    `  name      ${model.name} (fusion ${model.fusion})`,
    `  image     ${model.image.width}x${model.image.height} (${model.image.fit}), ${model.fps} fps`,
    `  prompt    ${model.acceptsPrompt ? 'takes a prompt of its own (generation.prompt, --prompt)' : 'fixed by training'}`,
    `  worker    ${r.device ? `${r.device}; ` : ''}started and loaded in ${Math.round(r.loadMs)} ms; a test frame captioned in ${Math.round(r.frameMs)} ms${text ? ` ("${text.slice(0, 60)}")` : ' (silent)'}`,
    '  parity    not replayed through the worker (casa-live models check <bundle> replays a bundle\'s fixtures)',
    '',
  ].join('\n');
}

/** Captions one mid-grey frame through a real (greedy) session. */
async function captionTestFrame(model: CaptionModel): Promise<{ frameMs: number; text: string }> {
  const { width, height } = model.image;
  const session = await model.openSession({ temperature: 0, seed: 0 });
  try {
    const frame = { index: 0, ptsSeconds: 0, receivedAt: Date.now(), width, height, rgb: Buffer.alloc(width * height * 3, 128) };
    const t1 = performance.now();
    const r = await session.caption(frame);
    return { frameMs: performance.now() - t1, text: r.caption.text };
  } finally {
    session.close();
  }
}

function checkJson(dir: string, m: Manifest, r: CheckResult, listing: BundleListing): string {
  const { parity } = r;
  return `${JSON.stringify(
    {
      ok: true,
      dir,
      name: m.name,
      fusion: m.fusion,
      loadMs: Math.round(r.loadMs),
      frameMs: Math.round(r.frameMs),
      caption: r.text,
      parity: parity ? { maxAbsDiff: parity.maxAbsDiff, tolerance: parity.tolerance, textTokens: parity.textTokens, tokenizationChecked: parity.tokenizationChecked } : null,
      ...(listing.evaluation ? { eval: listing.evaluation } : {}),
    },
    null,
    2,
  )}\n`;
}

function checkReport(dir: string, m: Manifest, r: CheckResult, listing: BundleListing): string {
  const { parity, text } = r;
  return [
    `${dir}: ok`,
    `  name      ${m.name} (format version ${1}, fusion ${m.fusion})`,
    `  image     ${m.image.width}x${m.image.height} (${m.image.fit}), ${m.image.tokensPerFrame} tokens per frame`,
    `  decoder   ${m.decoder.layers} layers, hidden ${m.decoder.hiddenSize}, ${m.decoder.heads} heads / ${m.decoder.kvHeads} kv heads, CASA layers [${m.decoder.casaLayers.join(', ')}], vocab ${m.decoder.vocabSize}`,
    `  defaults  ${m.generation.fps} fps, ${m.generation.maxNewTokensPerFrame} tokens/frame, temperature ${m.generation.temperature}, context ${m.context.maxContextTokens} tokens`,
    `  graphs    loaded and checked in ${Math.round(r.loadMs)} ms; a test frame captioned in ${Math.round(r.frameMs)} ms${text ? ` ("${text.slice(0, 60)}")` : ' (silent)'}`,
    parity
      ? `  parity    max |Δlogit| ${parity.maxAbsDiff.toExponential(2)} ≤ ${parity.tolerance} over ${parity.textTokens} tokens against the PyTorch reference; tokenizer ${parity.tokenizationChecked} samples identical`
      : '  parity    no fixtures/ in the bundle: not checked',
    ...(evalFigure(listing.evaluation) ? [`  eval      ${evalFigure(listing.evaluation)}`] : []),
    '',
  ].join('\n');
}

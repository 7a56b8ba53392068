import { existsSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ModelError, UsageError } from '../../src/errors.js';
import { FORMAT_VERSION, Model, loadModel, type LoadOptions } from '../../src/engine.js';
import { availableParallelism } from 'node:os';
import { BATCH_DEFAULTS } from '../../src/model/batch/options.js';
import { copyBundle, DEV_CASA, DEV_CASA_V1, DEV_INSERTION, noiseFrame } from './helpers.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()?.();
});

function broken(src: string, edit: (dir: string) => void): string {
  const { dir, cleanup } = copyBundle(src);
  cleanups.push(cleanup);
  edit(dir);
  return dir;
}

function editJson(file: string, edit: (j: Record<string, any>) => void): void {
  const j = JSON.parse(readFileSync(file, 'utf8')) as Record<string, any>;
  edit(j);
  writeFileSync(file, JSON.stringify(j, null, 1));
}

/** Renames a tensor inside an .onnx file (same length, so the protobuf stays valid). */
function renameTensor(file: string, from: string, to: string): void {
  expect(to.length).toBe(from.length);
  const buf = readFileSync(file);
  const a = Buffer.from(from);
  let n = 0;
  for (let i = buf.indexOf(a); i >= 0; i = buf.indexOf(a, i + a.length)) {
    buf.write(to, i);
    n++;
  }
  expect(n).toBeGreaterThan(0);
  writeFileSync(file, buf);
}

async function loadError(dir: string, opts?: LoadOptions): Promise<ModelError> {
  try {
    const m = await loadModel(dir, opts);
    await m.release();
  } catch (err) {
    expect(err).toBeInstanceOf(ModelError);
    return err as ModelError;
  }
  throw new Error(`${dir} loaded but should not have`);
}

describe('bundle loading', () => {
  it('loads both dev bundles and exposes the manifest', async () => {
    for (const dir of [DEV_CASA, DEV_INSERTION]) {
      const m = await Model.load(dir);
      expect(m.manifest.formatVersion).toBe(dir === DEV_CASA ? FORMAT_VERSION : 1);
      expect(m.fusion).toBe(dir === DEV_CASA ? 'casa' : 'insertion');
      expect(m.promptIds.length).toBe(80);
      expect(m.decode(m.encode(' it moves right'))).toBe(' it moves right');
      await m.release();
      await m.release(); // idempotent
      await expect(m.openSession()).rejects.toThrow(/released/);
    }
  });

  it('a version-2 CASA bundle runs batched by default, or unbatched with batch: false', async () => {
    const m = await Model.load(DEV_CASA);
    expect(m.engine).toEqual({ batched: true, ...BATCH_DEFAULTS });
    expect(BATCH_DEFAULTS).toEqual({ maxSize: 64, gatherMs: 2, frameGatherMs: 80, workers: Math.min(4, availableParallelism()) });
    expect(m.batchStats()).toMatchObject({ workers: BATCH_DEFAULTS.workers, decoderRuns: 0 });
    await m.release();
    const u = await Model.load(DEV_CASA, { batch: false });
    expect(u.engine).toEqual({ batched: false, reason: 'batch: false' });
    expect(u.batchStats()).toBeUndefined();
    await u.release();
  });

  it('the insertion twin runs unbatched, whatever the options', async () => {
    const m = await Model.load(DEV_INSERTION, { batch: { maxSize: 8 } });
    expect(m.engine).toEqual({ batched: false, reason: 'the insertion twin runs one stream per graph run' });
    await m.release();
  });

  it('a version-1 CASA bundle runs unbatched and says why; asked to batch, it is refused with what to do', async () => {
    const m = await Model.load(DEV_CASA_V1);
    const why = `${DEV_CASA_V1}/casa.json: format version 1 has no batch axis`;
    const fix = `re-export it with "python3 -m tools.casa_model reexport --bundle ${DEV_CASA_V1}"`;
    expect(m.engine).toEqual({ batched: false, reason: `${why} (${fix} to batch it)` });
    const s = await m.openSession({ seed: 1 });
    expect((await s.caption(noiseFrame(0))).caption.type).toBe('caption');
    await m.release();
    const e = await loadError(DEV_CASA_V1, { batch: { maxSize: 16 } });
    expect(e.message).toBe(`${why}; ${fix}, or load it with batch: false`);
  });

  it('invalid batch options are refused', async () => {
    await expect(loadModel(DEV_CASA, { batch: { maxSize: 0 } })).rejects.toThrow('load option batch.maxSize = 0 is invalid: must be an integer ≥ 1');
    await expect(loadModel(DEV_CASA, { batch: { gatherMs: -1 } })).rejects.toThrow(/batch.gatherMs = -1 is invalid/);
    await expect(loadModel(DEV_CASA, { batch: { frameGatherMs: Number.NaN } })).rejects.toThrow(/batch.frameGatherMs = NaN is invalid/);
    await expect(loadModel(DEV_CASA, { batch: { workers: 1.5 } })).rejects.toThrow(UsageError);
  });
});

describe('bad bundles: one clear ModelError naming the file', () => {
  it('missing directory', async () => {
    const e = await loadError('/nonexistent/casa-bundle');
    expect(e.message).toBe('/nonexistent/casa-bundle: model bundle directory not found');
  });

  it('missing casa.json', async () => {
    const dir = broken(DEV_CASA, (d) => rmSync(path.join(d, 'casa.json')));
    const e = await loadError(dir);
    expect(e.message).toBe(`${dir}/casa.json: file not found; this is not a casa-live model bundle`);
  });

  it('missing graph file', async () => {
    const dir = broken(DEV_CASA, (d) => rmSync(path.join(d, 'decoder.onnx')));
    const e = await loadError(dir);
    expect(e.message).toBe(`${dir}/decoder.onnx: file not found (casa.json files.decoder); the bundle is incomplete`);
  });

  it('missing tokenizer', async () => {
    const dir = broken(DEV_INSERTION, (d) => rmSync(path.join(d, 'tokenizer.json')));
    const e = await loadError(dir);
    expect(e.message).toContain(`${dir}/tokenizer.json: file not found (casa.json files.tokenizer)`);
  });

  it('unknown format version', async () => {
    const dir = broken(DEV_CASA, (d) => editJson(path.join(d, 'casa.json'), (j) => (j.formatVersion = 99)));
    const e = await loadError(dir);
    expect(e.message).toBe(`${dir}/casa.json: formatVersion 99 is not supported; this runtime reads versions 1 and 2`);
  });

  it('manifest that is not JSON, or misses fields', async () => {
    const a = broken(DEV_CASA, (d) => writeFileSync(path.join(d, 'casa.json'), '{"format": "casa-live-bundle",'));
    expect((await loadError(a)).message).toMatch(new RegExp(`^${a}/casa.json: not valid JSON`));
    const b = broken(DEV_CASA, (d) =>
      editJson(path.join(d, 'casa.json'), (j) => {
        delete j.decoder.headDim;
        j.image.fit = 'zoom';
      }),
    );
    const e = await loadError(b);
    expect(e.message).toContain(`${b}/casa.json: `);
    expect(e.message).toContain('decoder.headDim');
    expect(e.message).toContain('image.fit');
  });

  it('renamed input tensor (checked in the inference worker, reported the same way)', async () => {
    const dir = broken(DEV_CASA, (d) => renameTensor(path.join(d, 'decoder.onnx'), 'past_keys', 'past_kezs'));
    const e = await loadError(dir);
    expect(e.message).toMatch(new RegExp(`^${dir}/decoder.onnx: input "past_keys_0" is missing \\(the graph has inputs .*"past_kezs_0"`));
    const v1 = broken(DEV_CASA_V1, (d) => renameTensor(path.join(d, 'decoder.onnx'), 'past_keys', 'past_kezs'));
    expect((await loadError(v1)).message).toMatch(new RegExp(`^${v1}/decoder.onnx: input "past_keys" is missing`));
  });

  it('a version-2 graph in a bundle that says version 1', async () => {
    const dir = broken(DEV_CASA, (d) => editJson(path.join(d, 'casa.json'), (j) => (j.formatVersion = 1)));
    const e = await loadError(dir);
    expect(e.message).toMatch(new RegExp(`^${dir}/decoder.onnx: input "past_keys" is missing \\(the graph has inputs .*"past_keys_0".*\\); re-export the bundle$`));
  });

  it('renamed output tensor', async () => {
    const dir = broken(DEV_CASA, (d) => renameTensor(path.join(d, 'decoder.onnx'), 'new_window_keys', 'new_window_kezs'));
    const e = await loadError(dir);
    expect(e.message).toMatch(new RegExp(`^${dir}/decoder.onnx: output "new_window_keys" is missing`));
  });

  it('reshaped tensor (decoder head size differs from the manifest)', async () => {
    const dir = broken(DEV_INSERTION, (d) => editJson(path.join(d, 'casa.json'), (j) => (j.decoder.headDim = 16)));
    const e = await loadError(dir);
    expect(e.message).toBe(
      `${dir}/decoder.onnx: input "past_keys" has shape [4,1,2,?,32] but the manifest needs [4,1,2,?,16]; re-export the bundle`,
    );
  });

  it('reshaped tensor (image size differs from the manifest)', async () => {
    const dir = broken(DEV_CASA, (d) => editJson(path.join(d, 'casa.json'), (j) => (j.image.width = 96)));
    const e = await loadError(dir);
    expect(e.message).toBe(`${dir}/vision.onnx: input "pixels" has shape [?,3,64,64] but the manifest needs [?,3,64,96]; re-export the bundle`);
  });

  it('reshaped tensor (CASA layer count)', async () => {
    const dir = broken(DEV_CASA, (d) => editJson(path.join(d, 'casa.json'), (j) => (j.decoder.casaLayers = [1, 3])));
    const e = await loadError(dir);
    expect(e.message).toBe(
      `${dir}/casa_kv.onnx: output "image_keys" has shape [4,?,2,16,32] but the manifest needs [2,?,2,16,32]; re-export the bundle`,
    );
  });

  it('truncated .onnx', async () => {
    const dir = broken(DEV_CASA, (d) => {
      const f = path.join(d, 'decoder.onnx');
      truncateSync(f, Math.floor(statSync(f).size / 2));
    });
    const e = await loadError(dir);
    expect(e.message).toMatch(new RegExp(`^${dir}/decoder.onnx: onnxruntime cannot load this graph \\(.+\\); the file is truncated or corrupt — re-export the bundle$`));
  });

  it('tokenizer that does not match the vocabulary size', async () => {
    const dir = broken(DEV_CASA, (d) =>
      editJson(path.join(d, 'tokenizer.json'), (j) => {
        j.model.vocab['zzzz'] = 342;
      }),
    );
    const e = await loadError(dir);
    expect(e.message).toBe(
      `${dir}/tokenizer.json: the tokenizer has 343 tokens (ids up to 342) but casa.json decoder.vocabSize is 342; the tokenizer does not belong to this model`,
    );
  });

  it('tokenizer whose special tokens do not match the manifest', async () => {
    const dir = broken(DEV_CASA, (d) => editJson(path.join(d, 'casa.json'), (j) => (j.tokens.eos = 1)));
    const e = await loadError(dir);
    expect(e.message).toBe(
      `${dir}/tokenizer.json: token "<|im_end|>" (casa.json prompt.eos) is id 3 but casa.json tokens say 1; the tokenizer does not belong to this model`,
    );
  });

  it('cuda provider without its libraries: a clear error', async () => {
    const require = createRequire(import.meta.url);
    const lib = path.join(path.dirname(require.resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so');
    if (existsSync(lib)) {
      // Libraries installed: it either works or fails naming CUDA.
      try {
        const m = await loadModel(DEV_CASA, { executionProvider: 'cuda' });
        await m.release();
      } catch (err) {
        expect(err).toBeInstanceOf(ModelError);
        expect((err as Error).message).toMatch(/cuda/i);
      }
      return;
    }
    await expect(loadModel(DEV_CASA, { executionProvider: 'cuda' })).rejects.toThrow(
      /^execution provider "cuda" is not available: onnxruntime-node's CUDA libraries are not installed/,
    );
  });
});

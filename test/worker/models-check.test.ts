/**
 * `casa-live models check` on models the Python worker runs (torch:, hf:): the check goes
 * through a real worker (tools/casa_worker on this machine's Python and PyTorch): the model
 * is loaded there and a test frame captioned; what cannot run is one sentence, exit code 4.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, runCli } from '../cli/helpers.js';
import { CASA_TINY } from './helpers.js';

beforeAll(ensureBuilt, 180_000);

describe('models check on a worker model', () => {
  it('torch:<bundle>: loaded in the worker, a test frame captioned; the report and --json', async () => {
    const [text, json] = await Promise.all([
      runCli(['models', 'check', 'torch:models/casa-tiny'], { timeoutMs: 120_000 }),
      runCli(['models', 'check', `torch:${CASA_TINY}`, '--json'], { timeoutMs: 120_000 }),
    ]);
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`torch:${CASA_TINY}: ok (model worker)`);
    expect(text.stdout).toMatch(/name {6}casa-tiny \(fusion casa\)/);
    expect(text.stdout).toMatch(/prompt {4}fixed by training/);
    expect(text.stdout).toMatch(/worker {4}cpu, float32; started and loaded in \d+ ms; a test frame captioned in \d+ ms/);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, ref: `torch:${CASA_TINY}`, engine: 'worker', name: 'casa-tiny', fusion: 'casa', acceptsPrompt: false });
  }, 240_000);

  it('hf:<org>/<name> that cannot run here: one sentence, exit 4 (not "bundle directory does not exist")', async () => {
    const r = await runCli(['models', 'check', 'hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC'], { timeoutMs: 120_000 });
    expect(r.code).toBe(4);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    // This machine has no CUDA GPU; on one that has, the next missing piece is transformers.
    expect(r.stderr).toMatch(/need a CUDA GPU, and torch sees none|lacks transformers/);
  }, 120_000);
});

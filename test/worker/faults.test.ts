/**
 * Worker faults (issue 22): a worker killed mid-frame, a hung worker, garbage on the
 * socket, a Python without torch, model files missing, unknown models, no GPU, no Python.
 * Each is one clear sentence (exit code 4 from the CLI), no worker process is left behind,
 * and streams on other workers or on the ONNX engine go on. The workers are real
 * (tools/casa_worker), except for the garbage, which a fake worker writes
 * (fixtures/fake_worker.py), and the missing torch, hidden by fixtures/python-without-torch.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Model, type CaptionModel } from '../../src/engine.js';
import { ModelError, UsageError } from '../../src/errors.js';
import { ensureBuilt, processesMentioning, runCli } from '../cli/helpers.js';
import { CASA_TINY, FIXTURES, ROOT, TORCH_REF, alive, clipFrames, sleep, until } from './helpers.js';

type WorkerBacked = CaptionModel & { pid?: number };
const frames = clipFrames('test-1', 6);
const tmp = mkdtempSync(path.join(tmpdir(), 'casa-worker-faults-'));

beforeAll(ensureBuilt, 180_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('a worker that dies, hangs or talks garbage', () => {
  it('killed mid-frame: its session fails with the reason, other streams go on, the next session gets a new worker', async () => {
    const [a, b, onnx] = (await Promise.all([loadModel(TORCH_REF), loadModel(TORCH_REF), Model.load(CASA_TINY)])) as [WorkerBacked, WorkerBacked, Model];
    try {
      const [sa, sb, so] = await Promise.all([a.openSession({ temperature: 0 }), b.openSession({ temperature: 0 }), onnx.openSession({ temperature: 0 })]);
      const firstPid = a.pid;
      const killed = (async () => {
        for await (const ev of sa.captionFrame(frames[0]!)) if (ev.type === 'token') process.kill(firstPid!, 'SIGKILL');
      })();
      await expect(killed).rejects.toThrow(/The model worker \(torch:.*casa-tiny\) was killed by SIGKILL unexpectedly/);
      await expect(sa.caption(frames[1]!)).rejects.toThrow(UsageError); // failed for good
      for (const f of frames) {
        const [rb, ro] = await Promise.all([sb.caption(f), so.caption(f)]);
        expect(rb.caption.text).toBe(ro.caption.text);
      }
      await until(() => !alive(firstPid), 5000, 'the killed worker to be gone');
      const again = await a.openSession({ temperature: 0 }); // restarts the worker (backoff from 1 s)
      expect(a.pid).not.toBe(firstPid);
      expect((await again.caption(frames[0]!)).caption.text).toBe('a big yellow square enters from the bottom');
    } finally {
      await Promise.all([a.release(), b.release(), onnx.release()]);
    }
  }, 240_000);

  it('hung: a frame not captioned within the frame timeout fails, and the worker is killed', async () => {
    const m = (await loadModel(TORCH_REF, { worker: { frameTimeoutMs: 3000 } })) as WorkerBacked;
    try {
      const s = await m.openSession({ temperature: 0 });
      const pid = m.pid!;
      process.kill(pid, 'SIGSTOP'); // the worker stops answering: as a hung CUDA kernel would
      await expect(s.caption(frames[0]!)).rejects.toThrow(/did not caption a frame within 3 s \(it is hung\); it was stopped/);
      await until(() => !alive(pid), 5000, 'the hung worker to be killed');
    } finally {
      await m.release();
    }
  }, 120_000);

  it('garbage on the socket: at start-up, or in place of a frame\'s answer', async () => {
    const fake = { python: path.join(FIXTURES, 'fake-python') };
    await expect(loadModel(TORCH_REF, { worker: { ...fake, env: { ...process.env, FAKE_WORKER: 'garbage-at-start' } } })).rejects.toThrow(
      /model worker sent a frame of length \d+ .*not the casa-live worker protocol/,
    );
    const m = (await loadModel(TORCH_REF, { worker: { ...fake, env: { ...process.env, FAKE_WORKER: 'garbage-on-frame' } } })) as WorkerBacked;
    try {
      const s = await m.openSession({ temperature: 0 });
      const pid = m.pid;
      const err = await s.caption(frames[0]!).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelError);
      expect((err as Error).message).toMatch(/sent a frame that is not msgpack/);
      await until(() => !alive(pid), 5000, 'the fake worker to be killed');
    } finally {
      await m.release();
    }
  }, 60_000);

  it('casa-live killed: its worker exits too (no orphan)', async () => {
    const script = `
      const { loadModel } = await import(${JSON.stringify(path.join(ROOT, 'dist', 'engine.js'))});
      const m = await loadModel(${JSON.stringify(TORCH_REF)});
      await m.openSession({ temperature: 0 });
      process.stdout.write(String(m.pid) + '\\n');
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
    expect(alive(pid)).toBe(true);
    child.kill('SIGKILL');
    await until(() => !alive(pid), 10_000, 'the worker of a SIGKILLed casa-live to exit');
  }, 120_000);
});

describe('a worker that cannot serve its model: one sentence, exit code 4', () => {
  async function captionWith(model: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
    const r = await runCli(['caption', path.join(ROOT, 'examples', 'test-1.mp4'), '--model', model, '--quiet', '--max-frames', '1'], {
      env,
      timeoutMs: 120_000,
    });
    return { code: r.code, stderr: r.stderr.trim() };
  }

  it('Python without torch', async () => {
    const r = await captionWith(TORCH_REF, { CASA_LIVE_PYTHON: path.join(FIXTURES, 'python-without-torch') });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/lacks the package torch \(needed by the torch adapter\); install it: pip install torch==2\.7\.0 \(Debian: apt-get install python3-torch\)\.$/);
    expect(r.stderr.split('\n')).toHaveLength(1);
  }, 120_000);

  it('no Python at all', async () => {
    const r = await captionWith(TORCH_REF, { CASA_LIVE_PYTHON: '/nonexistent/python3' });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/Python was not found at \/nonexistent\/python3; install Python 3 with PyTorch, or set CASA_LIVE_PYTHON/);
  }, 60_000);

  it('a bundle directory missing files', async () => {
    const dir = path.join(tmp, 'casa-tiny');
    cpSync(CASA_TINY, dir, { recursive: true });
    rmSync(path.join(dir, 'decoder.onnx'));
    const r = await captionWith(`torch:${dir}`);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/The model bundle .*casa-tiny lacks decoder\.onnx; copy the whole bundle directory\./);
  }, 120_000);

  it('a Hugging Face directory missing files', async () => {
    const dir = path.join(tmp, 'hf-model');
    cpSync(CASA_TINY, dir, { recursive: true, filter: (src) => !src.endsWith('.onnx') && !src.endsWith('casa.json') });
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'casa', auto_map: { AutoModel: 'modeling_casa.CasaModel' } }));
    const r = await captionWith(dir);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/The model directory .*hf-model lacks modeling_casa\.py, model weights \(\*\.safetensors\); download the whole checkpoint again\./);
  }, 120_000);

  it('an unknown released model, and a released model without a GPU', async () => {
    const unknown = await captionWith('hf:kyutai/CASA-Nope');
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toMatch(/Unknown model 'kyutai\/CASA-Nope': the released CASA models are CASA-Qwen2_5-VL-3B-LiveCC, /);
    const noGpu = await captionWith('hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC');
    expect(noGpu.code).toBe(4);
    // This machine has no CUDA GPU; on one that has, the next missing piece is transformers.
    expect(noGpu.stderr).toMatch(/need a CUDA GPU, and torch sees none|lacks transformers/);
  }, 120_000);
});

describe('what is left behind', () => {
  it('no worker process outlives the tests above: none of ours, no orphan', async () => {
    await sleep(500);
    const parentOf = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]);
    const left = processesMentioning('tools.casa_worker').filter((p) => {
      try {
        const parent = parentOf(p.pid);
        return parent === process.pid || (parent === 1 && p.cmd.includes(ROOT));
      } catch {
        return false; // gone meanwhile
      }
    });
    expect(left).toEqual([]);
  });
});

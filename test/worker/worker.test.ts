/**
 * The worker engine behind the engine API, on real workers: casa-tiny rebuilt in PyTorch
 * by tools/casa_worker (torch adapter) and served over the worker protocol. Nothing here
 * is a stand-in.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Model, type CaptionModel, type CaptionSessionLike } from '../../src/engine.js';
import { InputError, UsageError } from '../../src/errors.js';
import { CASA_TINY, TORCH_REF, alive, clipFrames, until } from './helpers.js';

const frames = clipFrames('test-1', 12);
let worker: CaptionModel & { pid?: number };
let onnx: Model;

beforeAll(async () => {
  [worker, onnx] = await Promise.all([loadModel(TORCH_REF), Model.load(CASA_TINY)]);
}, 180_000);

afterAll(async () => {
  const pid = worker?.pid;
  await worker?.release();
  await onnx?.release();
  expect(alive(pid)).toBe(false); // released: no worker process left
});

async function captions(s: CaptionSessionLike, from = 0, to = frames.length): Promise<string[]> {
  const out: string[] = [];
  for (const f of frames.slice(from, to)) out.push((await s.caption(f)).caption.text);
  return out;
}

describe('worker engine (torch adapter, casa-tiny)', () => {
  it('describes the model as the ONNX engine does', () => {
    expect(worker.runtime).toBe('worker');
    expect(worker.name).toBe('casa-tiny');
    expect(worker.fusion).toBe('casa');
    expect(worker.image).toEqual(onnx.image);
    expect(worker.fps).toBe(onnx.fps);
    expect(worker.acceptsPrompt).toBe(false);
  });

  it('gives the ONNX engine\'s greedy captions, token pieces adding up to each caption', async () => {
    const [w, o] = await Promise.all([worker.openSession({ temperature: 0 }), onnx.openSession({ temperature: 0 })]);
    for (const f of frames) {
      const [a, b] = await Promise.all([w.caption(f), o.caption(f)]);
      expect(a.caption.text).toBe(b.caption.text);
      expect(a.ids).toEqual(b.ids);
      expect(a.tokens.map((t) => t.text).join('').trim()).toBe(a.caption.text);
      expect(a.caption).toMatchObject({ frame: f.index, start: f.ptsSeconds, end: f.ptsSeconds + 0.5 });
    }
    const [sw, so] = [w.stats(), o.stats()];
    for (const k of ['kvTokens', 'textKvTokens', 'textTokensFed', 'frames', 'sampledTokens', 'lastFrameTokens'] as const) expect(sw[k]).toBe(so[k]);
    w.close();
    o.close();
  }, 120_000);

  it('serves many sessions from one worker, interleaved frame by frame', async () => {
    const alone = await worker.openSession({ temperature: 0 });
    const want = await captions(alone, 0, 6);
    alone.close();
    const [a, b] = await Promise.all([worker.openSession({ temperature: 0 }), worker.openSession({ temperature: 0 })]);
    const [ga, gb] = await Promise.all([captions(a, 0, 6), captions(b, 0, 6)]);
    expect(ga).toEqual(want);
    expect(gb).toEqual(want);
    a.close();
    b.close();
  }, 120_000);

  it('a consumer that stops reading mid-frame leaves the session consistent (the frame is cut in the worker)', async () => {
    const s = await worker.openSession({ temperature: 0, tokenGranularity: 'piece' });
    for await (const ev of s.captionFrame(frames[0]!)) {
      expect(ev.type).toBe('token');
      break;
    }
    expect(s.stats().frames).toBe(1);
    const next = await s.caption(frames[1]!);
    expect(next.caption.frame).toBe(1);
    s.close();
  }, 60_000);

  it('realtimeDeadline ends a frame\'s text once its budget is spent', async () => {
    const s = await worker.openSession({ temperature: 0, realtimeDeadline: true, fps: 100_000 });
    const r = await s.caption(frames[0]!);
    expect(r.ids).toHaveLength(1); // 10 µs: spent after the first token
    const o = await onnx.openSession({ temperature: 0, realtimeDeadline: true, fps: 100_000 });
    expect((await o.caption(frames[0]!)).ids).toEqual(r.ids);
    s.close();
    o.close();
  }, 60_000);

  it('refuses a prompt for a fixed-prompt bundle, and malformed frames (the session goes on)', async () => {
    await expect(worker.openSession({ prompt: 'Describe the video.' })).rejects.toThrow(UsageError);
    await expect(onnx.openSession({ prompt: 'Describe the video.' })).rejects.toThrow(/trained with a fixed prompt/);
    const s = await worker.openSession({ temperature: 0 });
    await expect(s.caption({ ...frames[0]!, rgb: Buffer.alloc(10) })).rejects.toThrow(InputError);
    expect((await s.caption(frames[0]!)).caption.text).toBe('a big yellow square enters from the bottom');
    s.close();
    await expect(s.caption(frames[1]!)).rejects.toThrow(/session is closed/);
  }, 60_000);

  it('a released model closes its sessions and stops its worker', async () => {
    const m = (await loadModel(TORCH_REF)) as CaptionModel & { pid?: number };
    const s = await m.openSession({ temperature: 0 });
    const pid = m.pid;
    expect(alive(pid)).toBe(true);
    await m.release();
    expect(s.closed).toBe(true);
    await until(() => !alive(pid), 10_000, 'the worker to exit');
    await expect(m.openSession()).rejects.toThrow(/released/);
  }, 120_000);
});

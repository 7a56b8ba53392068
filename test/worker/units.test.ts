/**
 * Units of the worker engine and of the sampling it shares with the ONNX engine: the
 * protocol framing (split frames, garbage), model references, the config's prompt rule,
 * and the sampler's stop bias and windowed no-repeat n-gram.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encode } from '@msgpack/msgpack';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigInvalidError, parseConfig, parseStream } from '../../src/config/index.js';
import { InputError, ModelError, UsageError } from '../../src/errors.js';
import { isHfDir, parseModelRef, refTakesPrompt } from '../../src/model-ref.js';
import { resolveModelRef } from '../../src/pipeline/models.js';
import { applyStopBias } from '../../src/model/logits.js';
import { NgramWindow, Sampler } from '../../src/session/sampler.js';
import { FrameReader, WorkerProtocolError, workerError } from '../../src/worker/protocol.js';
import { CASA_TINY, ROOT } from './helpers.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'casa-worker-units-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function frame(msg: unknown): Buffer {
  const body = encode(msg);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, Buffer.from(body)]);
}

describe('protocol framing', () => {
  it('reassembles messages split anywhere, several per chunk', () => {
    const bytes = Buffer.concat([frame({ t: 'pong', id: 1 }), frame({ t: 'token', id: 2, session: 1, text: ' big' }), frame({ t: 'pong', id: 3 })]);
    const r = new FrameReader();
    const got = [];
    for (let i = 0; i < bytes.length; i += 3) got.push(...r.push(bytes.subarray(i, i + 3)));
    expect(got).toEqual([{ t: 'pong', id: 1 }, { t: 'token', id: 2, session: 1, text: ' big' }, { t: 'pong', id: 3 }]);
  });

  it('refuses garbage: a wild length, a body that is not msgpack, an unknown type, a missing field', () => {
    expect(() => new FrameReader().push(Buffer.from('Loading checkpoint shards\n'))).toThrow(/frame of length \d+ .*not the casa-live worker protocol/);
    expect(() => new FrameReader().push(Buffer.from([0, 0, 0, 2, 0xc1, 0xc1]))).toThrow(/not msgpack/);
    expect(() => new FrameReader().push(frame({ t: 'hi' }))).toThrow(/unknown message type "hi"/);
    expect(() => new FrameReader().push(frame({ t: 'caption', id: 1, session: 1 }))).toThrow(WorkerProtocolError);
    expect(() => new FrameReader().push(frame([1, 2]))).toThrow(/not a map with a string field "t"/);
  });

  it('maps error codes to the typed errors (exit codes)', () => {
    expect(workerError('bad_options', 'x')).toBeInstanceOf(UsageError);
    expect(workerError('bad_frame', 'x')).toBeInstanceOf(InputError);
    for (const code of ['missing_package', 'no_gpu', 'unknown_model', 'gated_model', 'model_files', 'frame_failed']) {
      expect(workerError(code, 'One sentence')).toBeInstanceOf(ModelError);
    }
    expect(workerError('no_gpu', 'No GPU').message).toBe('No GPU.');
  });
});

describe('model references', () => {
  it('name their engine', () => {
    expect(parseModelRef('casa-tiny')).toEqual({ engine: 'onnx', target: 'casa-tiny' });
    expect(parseModelRef('torch:models/casa-tiny')).toEqual({ engine: 'worker', adapter: 'torch', target: 'models/casa-tiny' });
    expect(parseModelRef('hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC')).toEqual({ engine: 'worker', adapter: 'hf', target: 'kyutai/CASA-Qwen2_5-VL-3B-LiveCC' });
  });

  it('resolve bundles inside torch:, keep repo ids, and tell a Hugging Face directory by its config.json', () => {
    expect(resolveModelRef('torch:models/casa-tiny', ROOT, {})).toBe(`torch:${CASA_TINY}`);
    expect(resolveModelRef('torch:casa-tiny', '/nowhere', {})).toBe(`torch:${CASA_TINY}`);
    expect(resolveModelRef('hf:kyutai/CASA-Qwen2_5-VL-3B', '/base', {})).toBe('hf:kyutai/CASA-Qwen2_5-VL-3B');
    expect(resolveModelRef('hf:./ckpt', '/base', {})).toBe('hf:/base/ckpt');
    const hfDir = path.join(tmp, 'ckpt');
    mkdirSync(hfDir);
    writeFileSync(path.join(hfDir, 'config.json'), '{}');
    expect(isHfDir(hfDir)).toBe(true);
    expect(isHfDir(CASA_TINY)).toBe(false);
    expect(refTakesPrompt(hfDir, '/')).toBe(true);
    expect(refTakesPrompt('hf:kyutai/CASA-Qwen2_5-VL-3B', '/')).toBe(true);
    expect(refTakesPrompt('casa-tiny', '/')).toBe(false);
    expect(refTakesPrompt('torch:casa-tiny', '/')).toBe(false);
    expect(refTakesPrompt('./missing', tmp)).toBeUndefined();
  });
});

describe('generation.prompt in the config', () => {
  const T = 'viewer-token-0123456789abcdef';
  const problems = (yaml: string): string[] => {
    try {
      parseConfig(yaml, { configPath: path.join(ROOT, 'casa-live.yaml') });
      return [];
    } catch (err) {
      return (err as ConfigInvalidError).details;
    }
  };

  it('is refused, at its field path, for a bundle whose prompt is fixed by training', () => {
    const own = problems(`auth: { tokens: ["${T}"] }\nstreams:\n  - id: cam\n    input: rtsp://h/x\n    generation: { prompt: "Describe it." }\n`);
    expect(own).toEqual([expect.stringMatching(/^streams\[0\]\.generation\.prompt: the model "casa-tiny" was trained with a fixed prompt and takes no prompt of its own; .* \(line 5\)$/)]);
    const shared = problems(`auth: { tokens: ["${T}"] }\ndefaults: { generation: { prompt: "Describe it." } }\nstreams:\n  - { id: a, input: rtsp://h/x }\n  - { id: b, input: rtsp://h/y }\n`);
    expect(shared).toEqual([expect.stringMatching(/^defaults\.generation\.prompt: the model "casa-tiny" /)]);
  });

  it('is refused for streams added over the HTTP API too', () => {
    const config = parseConfig(`auth: { tokens: ["${T}"] }\n`, { configPath: path.join(ROOT, 'casa-live.yaml') });
    const { problems: bad } = parseStream({ id: 'cam', input: 'rtsp://h/x', generation: { prompt: 'Describe it.' } }, config);
    expect(bad.map((p) => p.path)).toEqual(['generation.prompt']);
    expect(parseStream({ id: 'cam', input: 'rtsp://h/x', model: 'hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC', generation: { prompt: 'Describe it.' } }, config).problems).toEqual([]);
  });

  it('is accepted for models that take one', () => {
    expect(problems(`auth: { tokens: ["${T}"] }\nmodel: hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC\nstreams:\n  - id: cam\n    input: rtsp://h/x\n    generation: { prompt: "Describe it.", realtimeDeadline: true, stopBias: 0.95 }\n`)).toEqual([]);
  });
});

describe('sampling as in Kyutai\'s live captioner', () => {
  const base = {
    temperature: 0,
    topK: 0,
    repetitionPenalty: 1,
    repetitionPenaltyDecay: 0.99,
    repetitionCountClamp: 5,
    penaltyIgnore: [] as number[],
    eosBias: 0,
    eosId: 3,
    seed: 1,
    greedyProcessors: true,
  };

  it('stop bias: additive first, then multiplicative on every stop id, on either side of zero', () => {
    const l = new Float32Array([2, -2, 4, 1]);
    applyStopBias(l, [0, 1], 1, 0.5);
    expect(Array.from(l)).toEqual([1.5, -2, 4, 1]); // (2 + 1)·0.5, (−2 + 1)/0.5
  });

  it('windowed no-repeat n-gram: across feeds, stop ids exempt, only within the window', () => {
    const w = new NgramWindow(6);
    for (const id of [4, 5, 3, 4, 5, 6, 1, 4, 5]) w.push(id);
    expect([...w.banned(3, new Set([3]))]).toEqual([6]); // the oldest "4 5 3" fell out of the window; 3 is a stop anyway
    const s = new Sampler(8, { ...base, stopIds: [3], noRepeatNgramSize: 3, noRepeatNgramWindow: 60 });
    s.fed([4, 5, 6, 3, 4]);
    s.observe(5);
    const logits = new Float32Array(8);
    logits[6] = 9;
    logits[7] = 1;
    expect(s.sample(logits)).toBe(7);
    const greedy = new Sampler(8, { ...base, greedyProcessors: false, stopIds: [3], noRepeatNgramSize: 3 });
    greedy.fed([4, 5, 6, 3, 4]);
    greedy.observe(5);
    expect(greedy.sample(logits)).toBe(6); // plain greedy: the raw argmax
  });
});

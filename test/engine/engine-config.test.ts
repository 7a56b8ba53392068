/**
 * The serve config's `engine` block (batching and threads): schema errors by field path,
 * its mapping to the engine's load options, and the daemon loading its model with them.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigInvalidError, parseConfig } from '../../src/config/index.js';
import { Model } from '../../src/engine.js';
import { createDaemonHooks, loadOptionsFrom } from '../../src/pipeline/daemon.js';
import { DEV_CASA } from './helpers.js';

const auth = 'auth: { required: false }\n';

function problems(text: string): string[] {
  try {
    parseConfig(auth + text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigInvalidError);
    return (err as ConfigInvalidError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('the config was accepted');
}

describe('config engine block', () => {
  it('absent: the engine defaults', () => {
    const c = parseConfig(auth);
    expect(c.engine).toEqual({});
    expect(loadOptionsFrom(c.engine)).toEqual({});
  });

  it('maps batch and threads to load options', () => {
    const c = parseConfig(auth + 'engine: { batch: { maxSize: 32, gatherMs: 1.5, frameGatherMs: 50 }, threads: { workers: 2, intraOp: 1 } }\n');
    expect(loadOptionsFrom(c.engine)).toEqual({ batch: { maxSize: 32, gatherMs: 1.5, frameGatherMs: 50, workers: 2 }, intraOpNumThreads: 1 });
    expect(loadOptionsFrom(parseConfig(auth + 'engine: { batch: false, threads: { intraOp: 2 } }\n').engine)).toEqual({
      batch: false,
      intraOpNumThreads: 2,
    });
    expect(loadOptionsFrom(parseConfig(auth + 'engine: { threads: { workers: 3 } }\n').engine)).toEqual({ batch: { workers: 3 } });
  });

  it('invalid values are reported by field path', () => {
    expect(problems('engine: { batch: { maxSize: 0 } }\n')).toEqual([expect.stringMatching(/^engine\.batch\.maxSize: /)]);
    expect(problems('engine: { batch: true }\n')).toEqual([expect.stringMatching(/^engine\.batch: /)]);
    expect(problems('engine: { threads: { workers: 1.5 } }\n')).toEqual([expect.stringMatching(/^engine\.threads\.workers: /)]);
    expect(problems('engine: { batch: { gatherMs: -1 } }\n')).toEqual([expect.stringMatching(/^engine\.batch\.gatherMs: /)]);
    expect(problems('engine: { batch: { frameGatherMs: 5000 } }\n')).toEqual([expect.stringMatching(/^engine\.batch\.frameGatherMs: /)]);
    expect(problems('engine: { workers: 2 }\n')).toEqual(['engine.workers: unknown field']);
  });

  it('the daemon loads its model with the config engine settings', async () => {
    const hooks = createDaemonHooks();
    const config = parseConfig(`${auth}model: ${DEV_CASA}\nengine: { batch: { maxSize: 8, gatherMs: 0 }, threads: { workers: 2 } }\n`, {
      configPath: path.join(process.cwd(), 'x.yaml'),
    });
    await hooks.prepare(config);
    const model = await hooks.registry.load(DEV_CASA);
    if (!(model instanceof Model)) throw new Error('a bundle loads with the ONNX engine');
    expect(model.engine).toEqual({ batched: true, maxSize: 8, gatherMs: 0, frameGatherMs: 80, workers: 2 });
    await hooks.registry.closeAll();
  });
});

/** `casa-live frames`: PNG files of the frames the model would see, plus frames.jsonl. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileNotFoundError, runFramesCommand } from '../../src/ingest/index.js';
import { makeRedOverBlue, tempDir } from './helpers/media.js';
import { strayChildren } from './helpers/procs.js';

const tmp = tempDir();
let clip: string;
beforeAll(async () => {
  clip = await makeRedOverBlue(join(tmp.dir, 'rb.mp4'), { width: 320, height: 240, seconds: 3 });
});
afterAll(() => tmp.cleanup());

describe('runFramesCommand', () => {
  it('writes N PNG files and frames.jsonl with index and pts', async () => {
    const out = join(tmp.dir, 'out');
    const seen: string[] = [];
    const r = await runFramesCommand({ input: clip, out, count: 4, fps: 4, width: 64, height: 48, onFrame: (_f, file) => seen.push(file) });
    expect(r).toMatchObject({ frames: 4, outDir: out, droppedFrames: 0 });
    const pngs = readdirSync(out).filter((f) => f.endsWith('.png')).sort();
    expect(pngs).toEqual(['frame-000000.png', 'frame-000001.png', 'frame-000002.png', 'frame-000003.png']);
    expect(seen).toEqual(pngs);
    const lines = readFileSync(join(out, 'frames.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.index)).toEqual([0, 1, 2, 3]);
    // The source frames' own times: the first 25 fps frame at or after each 0.25 s step.
    expect(lines.map((l) => l.pts)).toEqual([0, 0.28, 0.52, 0.76]);
    expect(lines[0].file).toBe('frame-000000.png');
    const meta = await sharp(join(out, pngs[0]!)).metadata();
    expect(meta).toMatchObject({ format: 'png', width: 64, height: 48, channels: 3 });
    // Exactly the model's view: red over blue, no bars (320x240 is 4:3 like 64x48).
    const { data } = await sharp(join(out, pngs[0]!)).raw().toBuffer({ resolveWithObject: true });
    expect(data[(5 * 64 + 32) * 3]).toBeGreaterThan(200);
    expect(data[(40 * 64 + 32) * 3 + 2]).toBeGreaterThan(200);
    expect(strayChildren()).toEqual([]);
  });

  it('without --count writes every frame of a file', async () => {
    const out = join(tmp.dir, 'all');
    const r = await runFramesCommand({ input: clip, out });
    expect(r.frames).toBe(6);
    expect(readFileSync(join(out, 'frames.jsonl'), 'utf8').trim().split('\n')).toHaveLength(6);
  });

  it('stops on abort and keeps what it wrote', async () => {
    const out = join(tmp.dir, 'aborted');
    const ac = new AbortController();
    const r = await runFramesCommand({ input: clip, out, fps: 10, realtime: true, signal: ac.signal, onFrame: (f) => f.index === 1 && ac.abort() });
    expect(r.frames).toBeGreaterThanOrEqual(2);
    expect(r.frames).toBeLessThan(30);
    expect(strayChildren()).toEqual([]);
  });

  it('reports input errors as typed errors', async () => {
    await expect(runFramesCommand({ input: join(tmp.dir, 'missing.mp4'), out: join(tmp.dir, 'x') })).rejects.toBeInstanceOf(FileNotFoundError);
    expect(existsSync(join(tmp.dir, 'x', 'frames.jsonl'))).toBe(true);
  });
});

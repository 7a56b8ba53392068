// `casa-live models`, `models check DIR`, `frames`, and --help / --version of every command.
import { cpSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { DEV_INSERTION, DEV_MODEL, REPO_ROOT, readJsonl, runCli, setupCliTests } from './helpers.js';

const tmp = setupCliTests('casa-cli-models-', { 'clip.mp4': { seconds: 3, size: '320x180' } });
const clip = tmp.clip('clip.mp4');

describe('casa-live models', () => {
  it('lists the bundles of a models directory and marks the default (CASA_LIVE_MODEL)', async () => {
    const fixtures = path.dirname(DEV_MODEL);
    const [plain, json] = await Promise.all([
      runCli(['models', '--dir', fixtures], { env: { CASA_LIVE_MODEL: DEV_MODEL } }),
      runCli(['models', '--dir', fixtures, '--json'], { env: { CASA_LIVE_MODEL: DEV_MODEL } }),
    ]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^\* dev-casa +casa, 64x64, 16 image tokens\/frame/m);
    expect(plain.stdout).toMatch(/^ {2}dev-insertion +insertion, 64x64/m);
    expect(plain.stdout.match(/^[* ] dev-casa /gm)).toHaveLength(1); // found twice (env and --dir), listed once
    expect(json.code).toBe(0);
    const j = JSON.parse(json.stdout);
    expect(j.default).toBe(DEV_MODEL);
    // the package's own models/ (the embedded casa-tiny and its twin) are listed beside --dir
    const rows = j.bundles.map((b: any) => [b.name, b.fusion, b.default, b.ok]);
    expect(rows.filter((r: any[]) => String(r[0]).startsWith('dev-'))).toEqual([
      ['dev-casa', 'casa', true, true],
      ['dev-insertion', 'insertion', false, true],
    ]);
    expect(rows.filter((r: any[]) => r[2] === true)).toHaveLength(1);
  });

  it('check validates a bundle and captions a test frame (casa and insertion)', async () => {
    const [casa, ins] = await Promise.all([runCli(['models', 'check', DEV_MODEL]), runCli(['models', 'check', DEV_INSERTION, '--json'])]);
    expect(casa.code).toBe(0);
    expect(casa.stdout).toMatch(/: ok\n/);
    expect(casa.stdout).toMatch(/fusion casa/);
    expect(casa.stdout).toMatch(/graphs +loaded and checked in \d+ ms; a test frame captioned in \d+ ms/);
    expect(casa.stdout).toMatch(/parity +max \|Δlogit\| \S+ ≤ 0\.0001 over \d+ tokens against the PyTorch reference/);
    expect(ins.code).toBe(0);
    expect(JSON.parse(ins.stdout)).toMatchObject({ ok: true, name: 'dev-insertion', fusion: 'insertion', parity: { tolerance: 1e-4 } });
  });

  it('check fails (4) on a bundle that does not reproduce its reference logits', async () => {
    const bad = path.join(tmp.dir, 'drifted');
    cpSync(DEV_MODEL, bad, { recursive: true });
    const logits = readFileSync(path.join(bad, 'fixtures', 'logits.f32'));
    const f = new Float32Array(logits.buffer, logits.byteOffset, logits.byteLength / 4);
    f[100] = (f[100] ?? 0) + 0.5;
    writeFileSync(path.join(bad, 'fixtures', 'logits.f32'), logits);
    const r = await runCli(['models', 'check', bad]);
    expect(r.code).toBe(4);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^casa-live: The model bundle .*drifted does not reproduce its PyTorch reference fixtures: max \|Δlogit\| 5\.\d+e-1 exceeds the tolerance 0\.0001 \(step \d+\)\.\n$/);
  });
});

describe('casa-live frames', () => {
  it("writes the frames at the model's input size by default", async () => {
    const out = path.join(tmp.dir, 'frames');
    const r = await runCli(['frames', clip, '--out', out, '--count', '3', '--model', DEV_MODEL]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').filter((l) => l)).toEqual([0, 1, 2].map((i) => `${path.join(out, `frame-00000${i}.png`)}\t${(i / 2).toFixed(3)}`));
    expect(r.stderr).toMatch(/wrote 3 frames \(64x64\)/);
    expect(readdirSync(out).sort()).toEqual(['frame-000000.png', 'frame-000001.png', 'frame-000002.png', 'frames.jsonl']);
    const meta = await sharp(path.join(out, 'frame-000001.png')).metadata();
    expect([meta.width, meta.height]).toEqual([64, 64]);
    expect(readJsonl(path.join(out, 'frames.jsonl')).map((l) => l.pts)).toEqual([0, 0.5, 1]);
  });

  it('--width/--height/--fps override the model', async () => {
    const out = path.join(tmp.dir, 'frames2');
    const r = await runCli(['frames', clip, '-o', out, '-n', '2', '--width', '96', '--height', '54', '--fps', '4', '-q'], {
      env: { CASA_LIVE_MODEL: DEV_MODEL },
    });
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).toBe('');
    const meta = await sharp(path.join(out, 'frame-000000.png')).metadata();
    expect([meta.width, meta.height]).toEqual([96, 54]);
    // 4 fps from a 10 fps clip: the source frames at or after each 0.25 s step.
    expect(readJsonl(path.join(out, 'frames.jsonl')).map((l) => l.pts)).toEqual([0, 0.3]);
  });

  it('worker references: torch: takes its bundle\'s size; hf: needs --width and --height (no worker is started)', async () => {
    const out = path.join(tmp.dir, 'frames-torch');
    const torch = await runCli(['frames', clip, '--out', out, '--count', '1', '--model', `torch:${DEV_MODEL}`]);
    expect(torch.code).toBe(0);
    expect(torch.stderr).toMatch(/wrote 1 frame \(64x64\)/);
    const hf = await runCli(['frames', clip, '--out', path.join(tmp.dir, 'frames-hf'), '--count', '1', '--model', 'hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC']);
    expect(hf.code).toBe(2);
    expect(hf.stderr).toBe(
      'casa-live: The model hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC runs in the model worker and has no bundle to read its input size from; pass --width and --height (448 for the released CASA models), or --model with a bundle.\n',
    );
    const sized = await runCli(['frames', clip, '-o', path.join(tmp.dir, 'frames-hf'), '-n', '1', '-q', '--model', 'hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC', '--width', '48', '--height', '48']);
    expect(sized.code).toBe(0);
    expect((await sharp(path.join(tmp.dir, 'frames-hf', 'frame-000000.png')).metadata()).width).toBe(48);
  });
});

describe('help and version', () => {
  it('every command has --help with examples and the exit codes', async () => {
    const commands = [[], ['caption'], ['frames'], ['models'], ['models', 'check'], ['serve'], ['config'], ['config', 'check']];
    const results = await Promise.all(commands.map((c) => runCli([...c, '--help'])));
    results.forEach((r, i) => {
      const what = commands[i]!.join(' ') || '(top level)';
      expect(r.code, what).toBe(0);
      expect(r.stdout, what).toMatch(/Exit codes:\n {2}0 +done\n {2}1 +internal error.*\n {2}2 +usage error.*\n {2}3 +input error.*\n {2}4 +model error.*\n {2}130 +interrupted/);
      expect(r.stdout, what).toMatch(/Examples:\n {2}casa-live /);
    });
    expect(results[1]!.stdout).toMatch(/--burn-in/);
    expect(results[1]!.stdout).toMatch(/casa-live caption --demo/);
    const version = await runCli(['--version']);
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version);
  });
});

// Bad input → one clear sentence on stderr and the documented exit code (docs/cli.md):
// 2 usage, 3 input, 4 model. Nothing on stdout, no stack trace, no ffmpeg left behind.
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../ingest/helpers/media.js';
import { DEV_MODEL, FFMPEG, processesMentioning, runCli, setupCliTests } from './helpers.js';

const tmp = setupCliTests('casa-cli-errors-', { 'clip.mp4': 2 });
const clip = tmp.clip('clip.mp4');

interface Case {
  name: string;
  args: string[];
  code: number;
  message: RegExp;
  env?: NodeJS.ProcessEnv;
}

function expectOneSentence(stderr: string, message: RegExp, code: number): void {
  const lines = stderr.split('\n').filter((l) => l !== '');
  // Usage errors from the parser add a pointer to --help on a second line.
  expect(lines.length).toBeLessThanOrEqual(code === 2 ? 2 : 1);
  expect(lines[0]).toMatch(/^casa-live: .+[.)]$/);
  expect(lines[0]).toMatch(message);
  expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
}

async function check(cases: Case[]): Promise<void> {
  const results = await Promise.all(cases.map((c) => runCli(c.args, c.env ? { env: c.env } : {})));
  cases.forEach((c, i) => {
    const r = results[i]!;
    try {
      expect(r.code).toBe(c.code);
      expect(r.stdout).toBe('');
      expectOneSentence(r.stderr, c.message, c.code);
    } catch (err) {
      throw new Error(`${c.name}: ${(err as Error).message}\nstderr: ${r.stderr}`);
    }
  });
}

describe('caption: bad input', () => {
  it('input errors (3) and unsupported inputs (2)', async () => {
    const notVideo = path.join(tmp.dir, 'notes.mp4');
    writeFileSync(notVideo, 'this is not a video\n'.repeat(20));
    const dir = path.join(tmp.dir, 'adir');
    mkdirSync(dir);
    await check([
      { name: 'missing file', args: ['caption', path.join(tmp.dir, 'missing.mp4'), '--model', DEV_MODEL], code: 3, message: /missing\.mp4 does not exist/ },
      { name: 'not a video', args: ['caption', notVideo, '--model', DEV_MODEL], code: 3, message: /notes\.mp4 is corrupt|cannot decode|no video/ },
      { name: 'directory', args: ['caption', dir, '--model', DEV_MODEL], code: 3, message: /adir cannot be read \(it is a directory\)/ },
      { name: 'unknown scheme', args: ['caption', 'foo://camera/1', '--model', DEV_MODEL], code: 2, message: /scheme "foo:\/\/" is not supported/ },
      { name: 'typo scheme', args: ['caption', 'rtps://cam.local/stream', '--model', DEV_MODEL], code: 2, message: /"rtps:\/\/" is not supported/ },
      { name: 'no input', args: ['caption', '--model', DEV_MODEL], code: 2, message: /Name an input/ },
      { name: 'input and --demo', args: ['caption', clip, '--demo'], code: 2, message: /either an input or --demo/ },
    ]);
    expect(processesMentioning(tmp.dir)).toEqual([]);
  });

  it('model errors (4)', async () => {
    const noManifest = path.join(tmp.dir, 'empty-bundle');
    mkdirSync(noManifest);
    const badVersion = path.join(tmp.dir, 'bad-version');
    cpSync(DEV_MODEL, badVersion, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(badVersion, 'casa.json'), 'utf8'));
    writeFileSync(path.join(badVersion, 'casa.json'), JSON.stringify({ ...manifest, formatVersion: 99 }));
    const noDecoder = path.join(tmp.dir, 'no-decoder');
    cpSync(DEV_MODEL, noDecoder, { recursive: true });
    writeFileSync(path.join(noDecoder, 'decoder.onnx'), 'truncated');
    await check([
      { name: 'missing dir', args: ['caption', clip, '--model', path.join(tmp.dir, 'nope')], code: 4, message: /nope does not exist/ },
      { name: 'no casa.json', args: ['caption', clip, '--model', noManifest], code: 4, message: /is not a casa-live model bundle: it has no casa\.json/ },
      { name: 'format version', args: ['caption', clip, '--model', badVersion], code: 4, message: /formatVersion 99 is not supported/ },
      { name: 'corrupt graph', args: ['caption', clip, '--model', noDecoder], code: 4, message: /decoder\.onnx/ },
      { name: 'unknown name', args: ['caption', clip, '--model', 'no-such-model'], code: 4, message: /Model "no-such-model" was not found/ },
      {
        name: 'CASA_LIVE_MODEL missing',
        args: ['caption', clip],
        env: { CASA_LIVE_MODEL: path.join(tmp.dir, 'gone') },
        code: 4,
        message: /CASA_LIVE_MODEL names .*gone, which does not exist/,
      },
      { name: 'models check', args: ['models', 'check', noManifest], code: 4, message: /no casa\.json/ },
    ]);
  });

  it('--burn-in with an ffmpeg built without libass: refused before captioning (2)', async () => {
    // A stand-in ffmpeg: the real one, except that its filter list lacks "subtitles".
    const fake = path.join(tmp.dir, 'bin', 'ffmpeg');
    mkdirSync(path.dirname(fake), { recursive: true });
    writeFileSync(
      fake,
      `#!/bin/sh\nfor a in "$@"; do [ "$a" = "-filters" ] && { ${FFMPEG} "$@" | grep -v ' subtitles '; exit 0; }; done\nexec ${FFMPEG} "$@"\n`,
      { mode: 0o755 },
    );
    const out = path.join(tmp.dir, 'burned.mp4');
    await check([
      {
        name: 'no libass',
        args: ['caption', clip, '--model', DEV_MODEL, '--burn-in', out],
        env: { FFMPEG_PATH: fake },
        code: 2,
        message: /The ffmpeg at .*bin\/ffmpeg has no "subtitles" filter \(it was built without libass\), so --burn-in cannot work/,
      },
    ]);
    expect(existsSync(out)).toBe(false);
  });

  it('bad option values and unknown options (2)', async () => {
    const m = ['--model', DEV_MODEL];
    await check([
      { name: 'fps 0', args: ['caption', clip, ...m, '--fps', '0'], code: 2, message: /--fps must be a number above 0/ },
      { name: 'fps text', args: ['caption', clip, ...m, '--fps', 'fast'], code: 2, message: /--fps must be a number above 0 and at most 30, not a non-number/ },
      { name: 'max-frames', args: ['caption', clip, ...m, '--max-frames', '1.5'], code: 2, message: /--max-frames must be a whole number 1 or more, not 1\.5/ },
      { name: 'temperature', args: ['caption', clip, ...m, '--temperature', '-1'], code: 2, message: /--temperature must be a number from 0 to 10/ },
      { name: 'seed', args: ['caption', clip, ...m, '--seed', '-3'], code: 2, message: /--seed must be a whole number/ },
      { name: 'max-tokens', args: ['caption', clip, ...m, '--max-tokens', '0'], code: 2, message: /--max-tokens must be a whole number from 1 to 4096/ },
      { name: 'fit', args: ['caption', clip, ...m, '--fit', 'zoom'], code: 2, message: /--fit must be one of fill, crop, letterbox/ },
      { name: 'prompt for a bundle', args: ['caption', clip, ...m, '--prompt', 'Describe it.'], code: 2, message: /was trained with a fixed prompt and takes no prompt of its own; remove the prompt \(--prompt, generation\.prompt\)\./ },
      { name: 'retries', args: ['caption', clip, ...m, '--retries', '-1'], code: 2, message: /--retries must be a whole number 1 or more, not -1/ },
      { name: 'retry-timeout', args: ['caption', clip, ...m, '--retry-timeout', 'soon'], code: 2, message: /--retry-timeout must be a number from 0 to 86400, not a non-number/ },
      { name: 'unknown option', args: ['caption', clip, ...m, '--colour'], code: 2, message: /Unknown argument: colour/ },
      { name: 'missing value', args: ['caption', clip, ...m, '--srt'], code: 2, message: /srt/ },
      { name: 'srt dir missing', args: ['caption', clip, ...m, '--srt', path.join(tmp.dir, 'no', 'x.srt')], code: 2, message: /the directory .* does not exist/ },
      { name: 'same file twice', args: ['caption', clip, ...m, '--srt', path.join(tmp.dir, 'x.txt'), '--vtt', path.join(tmp.dir, 'x.txt')], code: 2, message: /name the same file/ },
      { name: 'burn-in live', args: ['caption', 'rtsp://127.0.0.1:9/x', ...m, '--burn-in', path.join(tmp.dir, 'b.mp4')], code: 2, message: /--burn-in needs a video file/ },
      { name: 'burn-in extension', args: ['caption', clip, ...m, '--burn-in', path.join(tmp.dir, 'b.txt')], code: 2, message: /--burn-in .*b\.txt: the file name must end in \.mp4/ },
      { name: 'unknown command', args: ['captoin', clip], code: 2, message: /Unknown command "captoin" \(did you mean caption\?\)/ },
      { name: 'unknown word', args: ['xyzzy'], code: 2, message: /Unknown argument: xyzzy/ },
      { name: 'no command', args: [], code: 2, message: /Name a command/ },
      { name: 'frames without --out', args: ['frames', clip], code: 2, message: /Missing required argument: out/ },
      { name: 'serve without --config', args: ['serve'], code: 2, message: /Missing required argument: config/ },
    ]);
  });
});

describe('caption: a live input that never comes up', () => {
  const LIMIT_S = 4;
  it(`gives up after --retry-timeout (${LIMIT_S} s) with exit 3 and one line on stderr, --quiet or not; an unreachable HLS URL too`, async () => {
    const closed = await freePort();
    const rtsp = `rtsp://127.0.0.1:${closed}/x`;
    const hls = `http://127.0.0.1:${closed}/live/index.m3u8`;
    const args = ['--model', DEV_MODEL, '--retry-timeout', String(LIMIT_S)];
    const [quiet, plain, http, logged] = await Promise.all(
      [[rtsp, '--quiet'], [rtsp], [hls, '-q'], [rtsp, '-q', '--log-level', 'info']].map((a) => runCli(['caption', ...a, ...args])),
    );
    const gaveUp = new RegExp(`; gave up: no frame within ${LIMIT_S} s \\(\\d+ attempts?\\)\\.$`);
    for (const r of [quiet, http]) {
      expect(r.code).toBe(3);
      expect(r.stdout).toBe('');
      expectOneSentence(r.stderr, gaveUp, 3);
    }
    expect(quiet.stderr).toMatch(/^casa-live: Connection to 127\.0\.0\.1:\d+ for input rtsp:\/\/127\.0\.0\.1:\d+\/x was refused; /);
    // ffmpeg itself finds the HLS server refusing (or, on a machine so loaded that ffmpeg takes the
    // whole limit to start, says that no frame came).
    expect(http.stderr).toMatch(/^casa-live: (Connection to 127\.0\.0\.1:\d+ for input |No frame came from )http:\/\/127\.0\.0\.1:\d+\/live\/index\.m3u8 /);
    // Without --quiet: the outage's start once, then the error; no line per retry.
    expect(plain.code).toBe(3);
    const lines = plain.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^casa-live: reconnecting: Connection to .* was refused; .*; retrying in \d\.\d s \(retry 1\)$/);
    expect(lines[1]).toMatch(gaveUp);
    // Within the limit: from the input's first connection attempt (after the model has loaded)
    // to the process's last log line, as the CLI's own log tells.
    const log = logged.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; time: string });
    const connecting = Date.parse(log.find((l) => l.msg === 'input connecting')!.time);
    const failed = Date.parse(log.find((l) => l.msg === 'input failed')!.time);
    expect(logged.code).toBe(3);
    expect(failed - connecting).toBeLessThanOrEqual(LIMIT_S * 1000 + 500);
    expect(processesMentioning(`127.0.0.1:${closed}`)).toEqual([]);
  });
});


// Config validation: every problem names its field path (and line), `config check` exits
// non-zero on them, defaults and secrets resolve.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigInvalidError, loadConfig, parseConfig, parseStream, validateStreamInput } from '../../src/config/index.js';
import { validateInput } from '../../src/ingest/index.js';
import { runConfigCheck } from '../../src/server/index.js';
import { removeDir, tmpDir } from './helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await tmpDir('casa-config-');
});
afterAll(async () => {
  await removeDir(dir);
});

const T = 'token-0123456789abcdef';

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, { configPath: path.join(dir, 'x.yaml'), env });
  } catch (err) {
    if (err instanceof ConfigInvalidError) return err.details;
    throw err;
  }
  return [];
}

async function check(text: string): Promise<{ code: number; out: string; err: string }> {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, text);
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks = { out: '', err: '' };
  out.on('data', (d) => (chunks.out += d));
  err.on('data', (d) => (chunks.err += d));
  const code = await runConfigCheck(file, { stdout: out, stderr: err });
  return { code, ...chunks };
}

describe('stream inputs', () => {
  it.each([
    ['rtsp://cam.local:554/stream', true],
    ['rtsps://cam.local/stream', true],
    ['rtmp://host/live/key', true],
    ['rtmps://host/live/key', true],
    ['http://host/live.m3u8', true],
    ['https://host/live.m3u8', true],
    ['srt://:9000?mode=listener', true],
    ['udp://@239.0.0.1:1234', true],
    ['udp://@:1234', true],
    ['file:///videos/a.mp4', true],
    ['/videos/a.mp4', true],
    ['videos/a b.mkv', true],
    ['-', true],
    ['/dev/video0', true],
    ['rtps://host/x', false],
    ['ftp://host/x', false],
    ['rtsp://', false],
    ['rtsp:/cam', false],
    ['', false],
    [' rtsp://h/x', false],
  ])('%s → %s, as the ingest (and so the CLI) decides', (input, ok) => {
    expect(validateStreamInput(input).ok).toBe(ok);
    if (input.trim() === input && input !== '') {
      if (ok) expect(() => validateInput(input)).not.toThrow();
      else expect(() => validateInput(input)).toThrow();
    }
  });

  it('words the ingest\'s reasons as config problems', () => {
    expect(validateStreamInput('rtsp:/cam').problem).toBe('is a malformed URL (expected rtsp://host/...)');
    expect(validateStreamInput('rtsp:///x').problem).toBe('has no host name');
  });
});

describe('config validation', () => {
  it('names the field path, the problem and the line', () => {
    const text = [
      'auth:',
      `  tokens: ["${T}"]`,
      'streams:',
      '  - id: cam1',
      '    input: rtsp://a/b',
      '  - id: cam2',
      '    input: rtmp://a/b',
      '  - id: cam3',
      '    input: rtps://a/b',
      '',
    ].join('\n');
    expect(problemsOf(text)).toEqual([
      'streams[2].input: unsupported scheme "rtps" (supported: file, rtsp, rtsps, rtmp, rtmps, http, https, srt, udp, a file path, "-" or /dev/videoN) (line 9)',
    ]);
  });

  it('reports every problem, with paths for nested fields and unknown keys', () => {
    const text = `
listen: { port: 70000 }
auth: { tokens: ["short"] }
limits: { maxClients: 0, clientBufferBytes: 8192, clientSoftBufferBytes: 16384 }
streams:
  - id: cam1
    input: rtsp://a/b
    generation: { temprature: 0.3 }
  - id: "bad id!"
    input: rtsp://a/b
  - input: rtsp://a/c
  - id: cam1
    input: rtsp://a/d
    fps: 0
typo: 1
`;
    const p = problemsOf(text);
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^listen\.port: .*65535.* \(line 2\)$/),
        expect.stringMatching(/^auth\.tokens\[0\]: .*16/),
        expect.stringMatching(/^limits\.maxClients: /),
        expect.stringMatching(/^streams\[0\]\.generation\.temprature: unknown field \(line 8\)$/),
        expect.stringMatching(/^streams\[1\]\.id: must be 1-64 characters/),
        expect.stringMatching(/^streams\[2\]\.id: is required/),
        expect.stringMatching(/^streams\[3\]\.fps: /),
        expect.stringMatching(/^typo: unknown field \(line 15\)$/),
      ]),
    );
  });

  it('checks cross-field rules after the schema', () => {
    const p = problemsOf(`
auth: { tokens: ["${T}"] }
limits: { clientBufferBytes: 8192, clientSoftBufferBytes: 16384 }
streams:
  - { id: cam1, input: "-" }
  - { id: cam1, input: "-" }
  - { id: cam2, input: rtsp://h/x, restart: { initialDelayMs: 5000, maxDelayMs: 1000 } }
`);
    expect(p).toEqual([
      expect.stringMatching(/^limits\.clientSoftBufferBytes: must be smaller than limits\.clientBufferBytes/),
      expect.stringMatching(/^streams\[1\]\.id: duplicate stream id "cam1" \(also streams\[0\]\)/),
      expect.stringMatching(/^streams\[1\]\.input: only one stream can read stdin/),
      expect.stringMatching(/^streams\[2\]\.restart\.initialDelayMs: must not exceed/),
    ]);
  });

  it('requires a token unless auth is explicitly off, and resolves env and file secrets', async () => {
    expect(problemsOf('streams: []')).toEqual([expect.stringMatching(/^auth\.tokens: at least one token is required/)]);
    expect(problemsOf('auth: { required: false }')).toEqual([]);
    await mkdir(path.join(dir, 'secrets'), { recursive: true });
    await writeFile(path.join(dir, 'secrets', 'admin'), 'admin-secret-from-a-file-0001\n');
    const config = parseConfig(`auth: { tokens: [{ env: VIEWER }], adminTokens: [{ file: secrets/admin }] }`, {
      configPath: path.join(dir, 'x.yaml'),
      env: { VIEWER: 'viewer-secret-from-env-0001' },
    });
    expect(config.auth.tokens).toEqual(['viewer-secret-from-env-0001']);
    expect(config.auth.adminTokens).toEqual(['admin-secret-from-a-file-0001']);
    expect(problemsOf(`auth: { tokens: [{ env: NOPE }] }`)).toEqual([expect.stringMatching(/^auth\.tokens\[0\]\.env: environment variable NOPE is not set/)]);
  });

  it('applies defaults and resolves paths against the config file', () => {
    const config = parseConfig(
      `
auth: { tokens: ["${T}"] }
model: casa-tiny
defaults: { fps: 1, generation: { temperature: 0.2, seed: 7 } }
streams:
  - { id: a, input: clips/a.mp4, generation: { temperature: 0 } }
  - { id: b, input: rtsp://h/b, model: other, fps: 4, enabled: false, restart: { policy: never } }
`,
      { configPath: '/etc/casa-live/casa-live.yaml', env: { STATE_DIRECTORY: '/var/lib/casa-live' } },
    );
    expect(config.dataDir).toBe('/var/lib/casa-live');
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 8787 });
    expect(config.streams[0]).toEqual({
      id: 'a',
      input: '/etc/casa-live/clips/a.mp4',
      model: 'casa-tiny',
      fps: 1,
      generation: { temperature: 0, seed: 7 },
      enabled: true,
      restart: { policy: 'always', initialDelayMs: 1000, maxDelayMs: 30000 },
    });
    expect(config.streams[1]).toMatchObject({ model: 'other', fps: 4, enabled: false, restart: { policy: 'never' } });
  });

  it('reports YAML syntax errors with their line', () => {
    expect(problemsOf('streams:\n  - id: a\n   input: [x\n')[0]).toMatch(/^\(config\): YAML syntax error: .*\(line \d\)$/);
  });
});

describe('string lengths', () => {
  it('refuses an over-long string with its field path and the limit, without quoting it', () => {
    const huge = `rtsp://cam.local/${'x'.repeat(10 * 1024 * 1024)}`;
    const t0 = Date.now();
    const problems = problemsOf(`auth: {tokens: [${T}]}\nstreams:\n  - id: cam\n    input: ${huge}\n`);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(problems).toEqual([`streams[0].input: is too long (${huge.length} characters; at most 4096) (line 4)`]);
    expect(problems.join('').length).toBeLessThan(200);
    // The API takes streams through the same schema.
    const config = parseConfig(`auth: {tokens: [${T}]}\n`, { configPath: path.join(dir, 'x.yaml') });
    expect(parseStream({ id: 'cam', input: huge }, config).problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      `input: is too long (${huge.length} characters; at most 4096)`,
    ]);
  });

  it('bounds every string field: ids, inputs, model, prompt, tokens, secrets, host, origins, dataDir, worker python', () => {
    const long = (n: number): string => 'a'.repeat(n);
    const yaml = [
      `listen: {host: ${long(256)}}`,
      `auth: {tokens: [${long(513)}, {env: ${long(257)}}, {file: ${long(4097)}}], allowedOrigins: ['https://${long(2048)}']}`,
      `model: ${long(4097)}`,
      `dataDir: ${long(4097)}`,
      `worker: {python: ${long(4097)}}`,
      'streams:',
      `  - {id: ${long(65)}, input: /v/${long(4094)}, model: ${long(4097)}, generation: {prompt: ${long(2001)}}}`,
    ].join('\n');
    expect(problemsOf(yaml).map((p) => p.replace(/ \(line \d+\)$/, '')).sort()).toEqual(
      [
        'listen.host: is too long (256 characters; at most 255)',
        'auth.tokens[0]: is too long (513 characters; at most 512)',
        'auth.tokens[1]: is too long (257 characters; at most 256)',
        'auth.tokens[2]: is too long (4097 characters; at most 4096)',
        'auth.allowedOrigins[0]: is too long (2056 characters; at most 2048)',
        'model: is too long (4097 characters; at most 4096)',
        'dataDir: is too long (4097 characters; at most 4096)',
        'worker.python: is too long (4097 characters; at most 4096)',
        'streams[0].id: is too long (65 characters; at most 64)',
        'streams[0].input: is too long (4097 characters; at most 4096)',
        'streams[0].model: is too long (4097 characters; at most 4096)',
        'streams[0].generation.prompt: is too long (2001 characters; at most 2000)',
      ].sort(),
    );
    // At the limits, every field is taken (a prompt by a model that takes one).
    expect(
      problemsOf(
        `auth: {tokens: [${long(512)}]}\nworker: {python: /${long(4095)}}\nstreams:\n  - {id: ${long(64)}, input: /v/${long(4093)}, model: 'hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC', generation: {prompt: ${long(2000)}}}\n`,
      ),
    ).toEqual([]);
  });
});

describe('renamed generation fields (the engine\'s names; the old ones deprecated)', () => {
  const parse = (text: string) => parseConfig(text, { configPath: path.join(dir, 'x.yaml'), env: {} });

  it('take the engine\'s names without a warning', () => {
    const config = parse('auth: { required: false }\ndefaults: { generation: { repetitionPenaltyDecay: 0.9, repetitionCountClamp: 3 } }\n');
    expect(config.defaults.generation).toEqual({ repetitionPenaltyDecay: 0.9, repetitionCountClamp: 3 });
    expect(config.warnings).toEqual([]);
  });

  it('accept the old names under the engine\'s, with a warning each naming the field and its line', () => {
    const config = parse(`auth: { required: false }
defaults:
  generation:
    repetitionPenaltyDecay: 0.9
    repetitionClamp: 3
streams:
  - id: cam1
    input: rtsp://h/x
    generation:
      repetitionDecay: 0.5
`);
    expect(config.defaults.generation).toEqual({ repetitionPenaltyDecay: 0.9, repetitionCountClamp: 3 });
    // The stream's old name overrides the default's new one.
    expect(config.streams[0]!.generation).toEqual({ repetitionPenaltyDecay: 0.5, repetitionCountClamp: 3 });
    expect(config.warnings).toEqual([
      { path: 'defaults.generation.repetitionClamp', message: 'is deprecated: rename it to repetitionCountClamp', line: 5 },
      { path: 'streams[0].generation.repetitionDecay', message: 'is deprecated: rename it to repetitionPenaltyDecay', line: 10 },
    ]);
  });

  it('refuse an old and a new name together', () => {
    expect(problemsOf(`auth: { required: false }
streams:
  - id: cam1
    input: rtsp://h/x
    generation: { repetitionClamp: 3, repetitionCountClamp: 4 }
`)).toEqual(['streams[0].generation.repetitionClamp: is the old name of repetitionCountClamp; give only repetitionCountClamp (line 5)']);
  });

  it('in a stream added through the HTTP API: the old name is renamed, both names are refused', () => {
    const config = parse('auth: { required: false }\n');
    expect(parseStream({ id: 'b', input: 'rtsp://h/y', generation: { repetitionDecay: 0.7 } }, config).stream?.generation).toEqual({ repetitionPenaltyDecay: 0.7 });
    expect(parseStream({ id: 'b', input: 'rtsp://h/y', generation: { repetitionDecay: 0.7, repetitionPenaltyDecay: 0.7 } }, config).problems).toEqual([
      { path: 'generation.repetitionDecay', message: 'is the old name of repetitionPenaltyDecay; give only repetitionPenaltyDecay' },
    ]);
  });
});

describe('config check', () => {
  it('exits 0 on a valid file', async () => {
    const r = await check(`auth: { tokens: ["${T}"] }\nstreams: [{ id: cam1, input: "rtsp://h/x" }]\n`);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/: ok \(1 stream, 1 enabled; listen 127\.0\.0\.1:8787/);
  });

  it('exits 2 and lists every problem by field path', async () => {
    const r = await check(`auth: { tokens: ["${T}"] }\nstreams:\n  - { id: cam1, input: "rtps://h/x" }\n  - { id: cam1, input: "rtsp://h/y" }\n`);
    expect(r.code).toBe(2);
    expect(r.err).toContain('2 problems');
    expect(r.err).toContain('streams[0].input: unsupported scheme "rtps"');
    expect(r.err).toContain('streams[1].id: duplicate stream id "cam1"');
  });

  it('exits 2 on a missing file', async () => {
    const r = await check('');
    expect(r.code).toBe(2);
    const missing = await runConfigCheck(path.join(dir, 'nope.yaml'), { stdout: new PassThrough(), stderr: new PassThrough() });
    expect(missing).toBe(2);
    await expect(loadConfig(path.join(dir, 'nope.yaml'))).rejects.toThrow(/does not exist/);
  });
});

describe('config/casa-live.example.yaml', () => {
  it('is valid (with its token files as systemd credentials)', async () => {
    const creds = path.join(dir, 'creds');
    await mkdir(creds, { recursive: true });
    await writeFile(path.join(creds, 'viewer-token'), 'example-viewer-token-0001\n');
    await writeFile(path.join(creds, 'admin-token'), 'example-admin-token-00001\n');
    const file = path.resolve('config', 'casa-live.example.yaml');
    const config = await loadConfig(file, { env: { CREDENTIALS_DIRECTORY: creds, STATE_DIRECTORY: '/var/lib/casa-live' } });
    expect(config.streams.map((s) => s.id)).toEqual(['lobby', 'stage', 'backstage']);
    expect(config.auth.tokens).toEqual(['example-viewer-token-0001']);
    expect(config.dataDir).toBe('/var/lib/casa-live');
  });
});

describe('ingest.decode (every stream\'s ffmpeg decoding)', () => {
  const auth = 'auth: { required: false }\n';
  const problems = (text: string): string => problemsOf(auth + text).join('\n');

  it('absent: ffmpeg\'s defaults; given: passed as it is', () => {
    expect(parseConfig(auth).ingest).toEqual({});
    expect(parseConfig(auth + 'ingest: { decode: { threads: 1, skipFrame: noref, hwaccel: vaapi, nice: 10 } }\n').ingest).toEqual({
      decode: { threads: 1, skipFrame: 'noref', hwaccel: 'vaapi', nice: 10 },
    });
  });

  it('invalid values are reported by field path', () => {
    expect(problems('ingest: { decode: { threads: 65 } }\n')).toMatch(/ingest\.decode\.threads/);
    expect(problems('ingest: { decode: { skipFrame: some } }\n')).toMatch(/ingest\.decode\.skipFrame/);
    expect(problems('ingest: { decode: { hwaccel: "cuda -i /etc/passwd" } }\n')).toMatch(/ingest\.decode\.hwaccel.*must be an ffmpeg hwaccel name/);
    expect(problems('ingest: { decode: { nice: -5 } }\n')).toMatch(/ingest\.decode\.nice/);
    expect(problems('ingest: { decode: { nice: 20 } }\n')).toMatch(/ingest\.decode\.nice/);
    expect(problems('ingest: { decoder: {} }\n')).toMatch(/ingest/);
  });
});

// The outputs' config: streams[].hls with its defaults, outputs.mqtt and outputs.youtube with
// their secrets read and their URLs checked, every problem reported by field path.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigInvalidError, parseConfig, parseStream } from '../../src/config/load.js';
import { HLS_DEFAULTS } from '../../src/config/schema.js';

const base = 'auth: { required: false }\n';

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, { env, configPath: '/etc/casa-live/casa-live.yaml' });
  } catch (err) {
    if (err instanceof ConfigInvalidError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

describe('streams[].hls', () => {
  it('takes the defaults for what it does not say; absent, the stream has no hls at all', () => {
    const c = parseConfig(`${base}streams:\n  - { id: a, input: rtsp://cam/a, hls: { enabled: true, height: 0 } }\n  - { id: b, input: rtsp://cam/b }\n`);
    expect(c.streams[0]!.hls).toEqual({ ...HLS_DEFAULTS, enabled: true, height: 0 });
    expect(c.streams[1]!).not.toHaveProperty('hls');
  });

  it('reports bad values by path, from the file and from the HTTP API alike', () => {
    expect(problemsOf(`${base}streams:\n  - { id: a, input: rtsp://cam/a, hls: { segmentSeconds: 0.1, preset: placebo, subtitleStyle: scroll } }\n`)).toEqual([
      expect.stringMatching(/^streams\[0\]\.hls\.segmentSeconds: /),
      expect.stringMatching(/^streams\[0\]\.hls\.preset: /),
      expect.stringMatching(/^streams\[0\]\.hls\.subtitleStyle: /),
    ]);
    const config = parseConfig(base);
    expect(parseStream({ id: 'x', input: 'rtsp://cam/x', hls: { enabled: true } }, config).stream?.hls?.enabled).toBe(true);
    expect(parseStream({ id: 'x', input: 'rtsp://cam/x', hls: { listSize: 1 } }, config).problems.map((p) => p.path)).toEqual(['hls.listSize']);
  });
});

describe('outputs', () => {
  it('reads the secrets, resolves the TLS files against the config file, fills in the defaults', () => {
    const c = parseConfig(
      `${base}outputs:\n  mqtt: { url: 'mqtts://broker:8883', username: u, password: { env: MQ }, tls: { ca: ca.pem } }\n  youtube:\n    - { stream: lobby, url: { env: YT }, region: 'reg1#cue1' }\n`,
      { env: { MQ: 'pw', YT: 'http://upload.youtube.com/closedcaption?cid=k' }, configPath: '/etc/casa-live/casa-live.yaml' },
    );
    expect(c.outputs.mqtt).toEqual({ url: 'mqtts://broker:8883', username: 'u', password: 'pw', topicPrefix: 'casa-live', qos: 1, tokens: false, tls: { ca: path.resolve('/etc/casa-live/ca.pem') } });
    expect(c.outputs.youtube).toEqual([{ stream: 'lobby', url: 'http://upload.youtube.com/closedcaption?cid=k', clockOffsetMs: 0, minIntervalMs: 1000, region: 'reg1#cue1' }]);
    expect(parseConfig(base).outputs).toEqual({ youtube: [] });
  });

  it('reports a bad broker URL, a caption URL that is not http(s), a missing secret, a wildcard prefix', () => {
    expect(
      problemsOf(
        `${base}outputs:\n  mqtt: { url: 'http://broker', topicPrefix: 'a/#' }\n  youtube:\n    - { stream: lobby, url: { env: YT } }\n    - { stream: stage, url: 'ftp://x/y' }\n    - { stream: hall, url: { env: NOPE } }\n`,
        { YT: 'not a url' },
      ),
    ).toEqual([
      'outputs.mqtt.url: must be a broker URL: mqtt://host[:port], mqtts://, ws:// or wss://',
      'outputs.mqtt.topicPrefix: must be a topic without wildcards (+, #), spaces or a leading /',
    ]);
    expect(problemsOf(`${base}outputs:\n  youtube:\n    - { stream: lobby, url: { env: YT } }\n    - { stream: stage, url: 'ftp://x/y' }\n    - { stream: hall, url: { env: NOPE } }\n`, { YT: 'not a url' })).toEqual([
      'outputs.youtube[0].url: must be the http(s) caption ingestion URL YouTube gives the broadcast',
      'outputs.youtube[1].url: must be the http(s) caption ingestion URL YouTube gives the broadcast',
      'outputs.youtube[2].url.env: environment variable NOPE is not set or empty',
    ]);
  });
});

describe('string lengths of the outputs (the schema\'s bounded strings)', () => {
  it('refuses over-long URLs, names, topics, regions, paths and secrets by field path and limit', () => {
    const long = (n: number): string => 'a'.repeat(n);
    const yaml = [
      base.trimEnd(),
      'outputs:',
      `  mqtt: { url: 'mqtt://${long(2048)}', username: ${long(257)}, password: ${long(2049)}, clientId: ${long(129)}, topicPrefix: ${long(257)}, tls: { ca: ${long(4097)} } }`,
      '  youtube:',
      `    - { stream: lobby, url: 'http://${long(2048)}', region: ${long(65)} }`,
      `    - { stream: stage, url: { env: ${long(257)} } }`,
    ].join('\n');
    expect(problemsOf(yaml).map((p) => p.replace(/ \(line \d+\)$/, '')).sort()).toEqual(
      [
        'outputs.mqtt.url: is too long (2055 characters; at most 2048)',
        'outputs.mqtt.username: is too long (257 characters; at most 256)',
        'outputs.mqtt.password: is too long (2049 characters; at most 2048)',
        'outputs.mqtt.clientId: is too long (129 characters; at most 128)',
        'outputs.mqtt.topicPrefix: is too long (257 characters; at most 256)',
        'outputs.mqtt.tls.ca: is too long (4097 characters; at most 4096)',
        'outputs.youtube[0].url: is too long (2055 characters; at most 2048)',
        'outputs.youtube[0].region: is too long (65 characters; at most 64)',
        'outputs.youtube[1].url: is too long (257 characters; at most 256)',
      ].sort(),
    );
  });

  it('holds a secret read from the environment to the same limit', () => {
    const url = `http://upload.youtube.com/closedcaption?cid=${'k'.repeat(2048)}`;
    expect(problemsOf(`${base}outputs:\n  youtube:\n    - { stream: lobby, url: { env: YT } }\n`, { YT: url })).toEqual([
      `outputs.youtube[0].url: is too long (${url.length} characters; at most 2048)`,
    ]);
  });
});

// `casa-live serve` with the real pipeline factory: the model is loaded once (prepare), each
// stream gets its own ffmpeg and caption session, a stream's own `model` is loaded from its
// bundle; captions reach the durable log / HTTP history; SIGTERM exits 0 with no ffmpeg left.
// Also `casa-live config check`.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { DEV_INSERTION, DEV_MODEL, processesMentioning, runCli, spawnCli, waitFor, setupCliTests } from './helpers.js';

const tmp = setupCliTests('casa-cli-serve-', { 'short.mp4': 2, 'long.mp4': 60 });
const short = tmp.clip('short.mp4');
const long = tmp.clip('long.mp4');

async function getJson(port: number, p: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`);
  return { status: res.status, body: await res.json() };
}

/** A serve config in the temp dir: loopback on a free port, no auth, and `fields`. */
function writeServeConfig(name: string, fields: Record<string, unknown>): string {
  const file = path.join(tmp.dir, name);
  writeFileSync(file, stringify({ listen: { host: '127.0.0.1', port: 0 }, auth: { required: false }, ...fields }));
  return file;
}

describe('casa-live serve', () => {
  it('captions streams on the shared model and a stream-specific model; SIGTERM exits 0', async () => {
    const config = writeServeConfig('casa-live.yaml', {
      model: path.relative(tmp.dir, DEV_MODEL), // relative to the config file
      dataDir: 'data',
      captionLog: { fsync: false },
      defaults: { generation: { temperature: 0, seed: 1 } },
      streams: [
        { id: 'short', input: 'short.mp4', restart: { policy: 'never' } },
        { id: 'other', input: 'short.mp4', model: DEV_INSERTION, restart: { policy: 'never' } },
        { id: 'long', input: 'long.mp4', restart: { policy: 'never' } },
      ],
    });
    const run = spawnCli(['serve', '--config', config]);
    const listening = await waitFor(() => {
      for (const line of run.stdout().split('\n')) {
        if (!line.startsWith('{')) continue;
        const j = JSON.parse(line);
        if (j.msg === 'casa-live serve listening') return j as { port: number };
      }
      return undefined;
    }, 20_000, 'the daemon to listen');
    const port = listening.port;
    const ready = await waitFor(async () => {
      const r = await getJson(port, '/readyz');
      return r.status === 200 ? r.body : undefined;
    }, 20_000, 'readiness');
    expect(ready.model).toMatchObject({ state: 'loaded', name: 'dev-casa' });

    const history = async (id: string): Promise<any[]> => (await getJson(port, `/v1/streams/${id}/captions?after=0`)).body.events;
    for (const id of ['short', 'other']) {
      const events = await waitFor(async () => {
        const ev = await history(id);
        return ev.some((e) => e.type === 'status' && e.state === 'ended') ? ev : undefined;
      }, 30_000, `stream ${id} to end`);
      const captions = events.filter((e) => e.type === 'caption');
      expect(captions.map((c) => c.frame)).toEqual([0, 1, 2, 3]);
      expect(captions.every((c) => c.stream === id && c.end - c.start === 0.5)).toBe(true);
      expect(events.filter((e) => e.type === 'status').map((e) => e.state)).toEqual(expect.arrayContaining(['connecting', 'live', 'ended']));
    }
    // The long stream is running (its ffmpeg too) when the daemon is told to stop.
    await waitFor(async () => (await history('long')).some((e) => e.type === 'caption'), 30_000, 'the long stream to caption');
    expect(processesMentioning(long).length).toBeGreaterThan(0);
    run.child.kill('SIGTERM');
    const r = await run.exited;
    expect(r.code).toBe(0);
    expect(processesMentioning(tmp.dir)).toEqual([]);
    expect(r.stdout).toMatch(/"msg":"shutdown complete"/);
  });

  it('a model that cannot load ends the daemon with exit code 4', async () => {
    const config = writeServeConfig('bad-model.yaml', {
      model: path.join(tmp.dir, 'no-such-bundle'),
      dataDir: 'data-bad',
      streams: [{ id: 'a', input: short }],
    });
    const r = await runCli(['serve', '--config', config], { timeoutMs: 30_000 });
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/no-such-bundle does not exist/); // the JSON log
    expect(r.stderr).toMatch(/^casa-live: Model bundle directory .*no-such-bundle does not exist\.\n$/);
  });

  it('config check: 0 for a valid file, 2 with every problem listed', async () => {
    const good = path.join(tmp.dir, 'good.yaml');
    const bad = path.join(tmp.dir, 'bad.yaml');
    writeFileSync(good, stringify({ auth: { required: false }, model: DEV_MODEL, streams: [{ id: 'a', input: short }] }));
    writeFileSync(bad, stringify({ auth: { required: false }, streams: [{ id: 'a', input: 'rtps://x/y' }, { id: 'a', input: short, fps: -1 }] }));
    const [g, b, serveBad] = await Promise.all([runCli(['config', 'check', good]), runCli(['config', 'check', bad]), runCli(['serve', '--config', bad])]);
    expect(g.code).toBe(0);
    expect(g.stdout).toMatch(/good\.yaml: ok \(1 stream, 1 enabled/);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/bad\.yaml: 3 problems/);
    expect(b.stderr).toMatch(/streams\[0\]\.input: unsupported scheme "rtps"/);
    expect(serveBad.code).toBe(2);
    expect(serveBad.stderr).toMatch(/streams\[1\]\.id: duplicate stream id/);
  });

  it('deprecated generation names: config check warns, serve logs the warning once, both names together are refused', async () => {
    const old = writeServeConfig('old-names.yaml', {
      model: DEV_MODEL,
      dataDir: 'data-old',
      defaults: { generation: { repetitionDecay: 0.9 } },
      streams: [{ id: 'a', input: short, restart: { policy: 'never' }, generation: { repetitionClamp: 3 } }],
    });
    const both = writeServeConfig('both-names.yaml', { defaults: { generation: { repetitionDecay: 0.9, repetitionPenaltyDecay: 0.9 } } });
    const [checkOld, checkBoth] = await Promise.all([runCli(['config', 'check', old]), runCli(['config', 'check', both])]);
    expect(checkOld.code).toBe(0);
    expect(checkOld.stdout).toMatch(/old-names\.yaml: ok \(1 stream/);
    expect(checkOld.stderr).toBe(
      `${old}: 2 warnings\n` +
        '  defaults.generation.repetitionDecay: is deprecated: rename it to repetitionPenaltyDecay (line 10)\n' +
        '  streams[0].generation.repetitionClamp: is deprecated: rename it to repetitionCountClamp (line 17)\n',
    );
    expect(checkBoth.code).toBe(2);
    expect(checkBoth.stderr).toMatch(/defaults\.generation\.repetitionDecay: is the old name of repetitionPenaltyDecay; give only repetitionPenaltyDecay/);

    const run = spawnCli(['serve', '--config', old]);
    const logLines = (): any[] => run.stdout().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    await waitFor(() => logLines().some((j) => j.msg === 'casa-live serve listening'), 20_000, 'the daemon to listen');
    await waitFor(() => logLines().filter((j) => /^config warning: /.test(j.msg)).length === 2, 10_000, 'the config warnings');
    run.child.kill('SIGTERM');
    const r = await run.exited;
    expect(r.code).toBe(0);
    const warnings = logLines().filter((j) => /^config warning: /.test(j.msg));
    expect(warnings.map((j) => [j.level, j.msg])).toEqual([
      ['warn', 'config warning: defaults.generation.repetitionDecay: is deprecated: rename it to repetitionPenaltyDecay (line 10)'],
      ['warn', 'config warning: streams[0].generation.repetitionClamp: is deprecated: rename it to repetitionCountClamp (line 17)'],
    ]);
  });
});

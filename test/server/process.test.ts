// The daemon as a process (built dist/, fixtures/daemon.mjs, stand-in pipelines):
// SIGKILL and restart → clients resume from the durable log with no gap and no duplicate;
// SIGHUP reload; SIGTERM → exit 0 within 10 s, logs flushed, clients closed with 1001,
// no ffmpeg left.
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify, parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ffmpegPath } from './fixtures/scripted-pipeline.mjs';
import { TestClient, ensureBuilt, freePort, isAlive, makeClip, removeDir, seqsOf, sleep, startDaemon, tmpDir, until, writeConfig, type Daemon, TOKEN, getJson } from './helpers.js';

const daemons: Daemon[] = [];
const dirs: string[] = [];
beforeAll(async () => {
  await ensureBuilt();
}, 120_000);
afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
  for (const dir of dirs) await removeDir(dir);
});

async function loggedCaptions(dataDir: string, stream: string): Promise<Array<{ seq: number; text: string }>> {
  const d = path.join(dataDir, 'captions', stream);
  const out: Array<{ seq: number; text: string; type: string }> = [];
  for (const f of (await readdir(d)).filter((x) => x.endsWith('.jsonl')).sort()) {
    for (const line of (await readFile(path.join(d, f), 'utf8')).split('\n')) if (line) out.push(JSON.parse(line));
  }
  return out.filter((e) => e.type === 'caption');
}

describe('daemon process', () => {
  it('SIGKILL, restart: clients resume from the durable log with no gap and no duplicate', async () => {
    const dir = await tmpDir();
    dirs.push(dir);
    const port = await freePort();
    const dataDir = path.join(dir, 'data');
    const configPath = await writeConfig(dir, {
      listen: { host: '127.0.0.1', port },
      captionLog: { fsync: true },
      limits: { resumeWindow: 1000 },
      streams: [{ id: 'cam1', input: 'rtsp://127.0.0.1:8554/cam1' }],
    });
    const a = await startDaemon(configPath, ['--run', 'A', '--frame-ms', '60']);
    daemons.push(a);

    // `early` leaves before the crash; `steady` is connected when the daemon is killed.
    const early = await TestClient.connect(port);
    const steady = await TestClient.connect(port);
    await early.subscribe(['cam1']);
    await steady.subscribe(['cam1']);
    await early.waitFor((m) => m.filter((x) => x.type === 'caption').length >= 5);
    await early.close();
    const earlySeq = early.lastSeq('cam1');
    await steady.waitFor((m) => m.filter((x) => x.type === 'caption' && (x.seq as number) > earlySeq).length >= 5);
    await sleep(37); // kill mid-frame, somewhere
    a.child.kill('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');
    const steadyClose = await steady.closed;
    expect(steadyClose.code).toBe(1006);
    const steadySeq = steady.lastSeq('cam1');

    const b = await startDaemon(configPath, ['--run', 'B', '--frame-ms', '60']);
    daemons.push(b);
    const early2 = await TestClient.connect(port);
    const steady2 = await TestClient.connect(port);
    await early2.subscribe(['cam1'], { resume: { cam1: earlySeq } });
    await steady2.subscribe(['cam1'], { resume: { cam1: steadySeq } });
    const runB = (m: { type: string; text?: unknown }[]) => m.filter((x) => x.type === 'caption' && String(x.text).includes('run B')).length >= 3;
    await early2.waitFor(runB, 10_000, 'captions from the restarted daemon');
    await steady2.waitFor(runB, 10_000, 'captions from the restarted daemon');
    b.child.kill('SIGTERM');
    expect(await b.exited).toEqual({ code: 0, signal: null });
    await early2.closed;
    await steady2.closed;

    const log = await loggedCaptions(dataDir, 'cam1');
    for (const [before, after, from] of [
      [early, early2, earlySeq],
      [steady, steady2, steadySeq],
    ] as const) {
      const got = [...seqsOf(before.messages, 'cam1', 'caption'), ...seqsOf(after.messages, 'cam1', 'caption')];
      expect(new Set(got).size).toBe(got.length); // no duplicate
      const first = got[0]!;
      const last = got.at(-1)!;
      expect(got).toEqual(log.map((e) => e.seq).filter((s) => s >= first && s <= last)); // no gap
      // The resumed client got run-A captions it missed (from the log) and run-B ones.
      const resumed = after.of('caption', 'cam1').map((m) => String(m.text));
      expect(resumed.some((t) => t.includes('run B'))).toBe(true);
      if (from === earlySeq) expect(resumed.some((t) => t.includes('run A'))).toBe(true);
      // The whole feed, tokens included, is strictly increasing across the crash.
      const all = [...seqsOf(before.messages, 'cam1'), ...seqsOf(after.messages, 'cam1')];
      for (let i = 1; i < all.length; i++) expect(all[i]).toBeGreaterThan(all[i - 1]!);
    }
  });

  it('SIGHUP reloads; SIGTERM exits 0 within 10 s, flushed, clients closed with 1001, no ffmpeg left', async () => {
    const dir = await tmpDir();
    dirs.push(dir);
    const clip = await makeClip(dir, ffmpegPath());
    const dataDir = path.join(dir, 'data');
    const configPath = await writeConfig(dir, {
      log: { level: 'info' },
      streams: [
        { id: 'cam1', input: clip },
        { id: 'cam2', input: clip },
      ],
    });
    const d = await startDaemon(configPath, ['--ffmpeg']);
    daemons.push(d);
    const c = await TestClient.connect(d.port);
    await c.subscribe(['cam1', 'cam2']);
    await c.waitFor((m) => m.filter((x) => x.type === 'caption' && x.stream === 'cam2').length >= 2, 15_000);

    const doc = parse(await readFile(configPath, 'utf8'));
    doc.streams.push({ id: 'cam3', input: clip });
    await writeFile(configPath, stringify(doc));
    d.child.kill('SIGHUP');
    await until(async () => (await getJson(`http://127.0.0.1:${d.port}/v1/streams`, TOKEN)).body.streams?.length === 3, 10_000, 'cam3 after SIGHUP');
    await until(() => d.lines.filter((l) => l.fixture === 'ffmpeg-spawned').length >= 3, 10_000, 'cam3 ffmpeg');
    expect(d.lines.some((l) => l.msg === 'config reloaded')).toBe(true);
    const pids = d.lines.filter((l) => l.fixture === 'ffmpeg-spawned').map((l) => l.pid as number);
    expect(pids.every(isAlive)).toBe(true);

    const t0 = Date.now();
    d.child.kill('SIGTERM');
    const exit = await d.exited;
    const took = Date.now() - t0;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(took).toBeLessThan(10_000);
    expect((await c.closed).code).toBe(1001);
    expect(pids.filter(isAlive)).toEqual([]);
    // Logs flushed: the last line is the shutdown record; the caption logs end cleanly.
    expect(d.lines.at(-1)).toMatchObject({ msg: 'shutdown complete', level: 'info' });
    for (const id of ['cam1', 'cam2', 'cam3']) {
      const files = (await readdir(path.join(dataDir, 'captions', id))).filter((f) => f.endsWith('.jsonl')).sort();
      const text = await readFile(path.join(dataDir, 'captions', id, files.at(-1)!), 'utf8');
      expect(text.endsWith('\n')).toBe(true);
      const last = JSON.parse(text.trim().split('\n').at(-1)!);
      expect(last).toMatchObject({ type: 'status', stream: id, state: 'ended', reason: 'server shutting down' });
    }
    // The client saw the final status before the close.
    expect(c.of('status', 'cam1').at(-1)).toMatchObject({ state: 'ended', reason: 'server shutting down' });
    console.log(`SIGTERM → exit 0 in ${took} ms`);
  });

  it('refuses to start on an invalid config, naming the field', async () => {
    const dir = await tmpDir();
    dirs.push(dir);
    const configPath = await writeConfig(dir, { streams: [{ id: 'cam1', input: 'rtps://h/x' }] });
    await expect(startDaemon(configPath)).rejects.toThrow(/exited early \(2\).*streams\[0\]\.input: unsupported scheme "rtps"/s);
  });
});

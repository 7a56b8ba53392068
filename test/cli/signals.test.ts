// Ctrl-C: `casa-live caption` stops within a second, exits 130, leaves complete (valid) SRT,
// WebVTT and JSONL files, and no ffmpeg child behind.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEV_MODEL, ffmpegReadsSubtitles, processesMentioning, readJsonl, setupCliTests, spawnCli, subtitlePackets, waitFor } from './helpers.js';

const tmp = setupCliTests('casa-cli-signals-', { 'long.mp4': 30 });
const clip = tmp.clip('long.mp4');

/** Child pids of `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) out.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return out;
}

describe('caption: interrupt', () => {
  it('SIGINT mid-stream: exit 130 within a second, valid files, no ffmpeg left', async () => {
    const out = (n: string): string => path.join(tmp.dir, n);
    const run = spawnCli([
      'caption',
      clip,
      '--model',
      DEV_MODEL,
      '--realtime',
      '--srt',
      out('i.srt'),
      '--vtt',
      out('i.vtt'),
      '--jsonl',
      out('i.jsonl'),
    ]);
    const pid = run.child.pid!;
    // Wait until a few frames are captioned (and ffmpeg is running).
    await waitFor(() => run.stdout().split('\n').filter((l) => l.startsWith('[')).length >= 4, 30_000, 'four captions');
    const ffmpegPids = childrenOf(pid);
    expect(ffmpegPids.length).toBeGreaterThan(0);
    const t0 = Date.now();
    run.child.kill('SIGINT');
    const r = await run.exited;
    const stopMs = Date.now() - t0;
    expect(r.code).toBe(130);
    expect(stopMs).toBeLessThan(1000);
    expect(r.stderr).toMatch(/interrupted; the files written so far are complete/);
    for (const p of ffmpegPids) expect(() => process.kill(p, 0)).toThrow();
    expect(processesMentioning(clip)).toEqual([]);

    const events = readJsonl(out('i.jsonl'));
    const captions = events.filter((e) => e.type === 'caption');
    expect(captions.length).toBeGreaterThanOrEqual(4);
    expect(events.at(-1)).toMatchObject({ type: 'status', state: 'ended', reason: 'stopped' });
    events.forEach((e, i) => expect(e.seq).toBe(i + 1));

    const srtPackets = await subtitlePackets(out('i.srt'));
    const vttPackets = await subtitlePackets(out('i.vtt'));
    expect(srtPackets.length).toBeGreaterThan(0);
    expect(vttPackets).toEqual(srtPackets);
    for (let i = 1; i < srtPackets.length; i++) expect(srtPackets[i]!.start).toBeGreaterThanOrEqual(srtPackets[i - 1]!.end - 1e-6);
    await ffmpegReadsSubtitles(out('i.srt'), 'srt');
    await ffmpegReadsSubtitles(out('i.vtt'), 'webvtt');
    // The last cue ends by the end of the last captioned frame.
    expect(srtPackets.at(-1)!.end).toBeLessThanOrEqual(captions.at(-1).end + 1e-3);
  });

  it('SIGTERM while the model loads: exit 130 at once, nothing started', async () => {
    const run = spawnCli(['caption', clip, '--model', DEV_MODEL, '--log-level', 'info', '--jsonl', path.join(tmp.dir, 'early.jsonl')]);
    await waitFor(() => run.stderr().includes('loading model'), 10_000, 'the model to start loading');
    run.child.kill('SIGTERM');
    const r = await run.exited;
    expect(r.code).toBe(130);
    expect(processesMentioning(clip)).toEqual([]);
  });

  it('a second Ctrl-C quits at once', async () => {
    const run = spawnCli(['caption', clip, '--model', DEV_MODEL, '--realtime', '--srt', path.join(tmp.dir, 'twice.srt')]);
    await waitFor(() => run.stdout().includes('['), 30_000, 'a caption');
    run.child.kill('SIGINT');
    run.child.kill('SIGINT');
    const r = await run.exited;
    expect(r.code).toBe(130);
    expect(processesMentioning(clip)).toEqual([]);
    await ffmpegReadsSubtitles(path.join(tmp.dir, 'twice.srt'), 'srt');
  });
});

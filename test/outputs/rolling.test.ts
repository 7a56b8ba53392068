// Rolling captions: the line rule (rollText), the rolling segmenter (never more than two lines
// of at most N characters, the older line scrolling up, each cue lasting until the next), and
// `casa-live caption --subtitle-style rolling` on the dev model: SRT and WebVTT files that
// ffmpeg parses, with contiguous cues of at most two lines.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { RollingSegmenter } from '../../src/sinks/rolling.js';
import { rollText, wrap, type Cue } from '../../src/sinks/segmenter.js';
import { formatSubtitles } from '../../src/sinks/subtitles.js';
import { PAGE_CLIENT_JS } from '../../src/server/pages/page-client.js';
import { DEV_MODEL, ffmpegReadsSubtitles, runCli, setupCliTests, subtitlePackets } from '../cli/helpers.js';

function roll(texts: string[], maxLineChars = 20, streamEnd?: number): Cue[] {
  const seg = new RollingSegmenter({ maxLineChars });
  const out: Cue[] = [];
  texts.forEach((text, i) => out.push(...seg.push({ start: i / 2, end: (i + 1) / 2, text })));
  out.push(...seg.flush(streamEnd ?? texts.length / 2));
  return out;
}

function expectRollingShape(cues: Cue[], width: number): void {
  for (const [i, c] of cues.entries()) {
    expect(c.lines.length).toBeGreaterThan(0);
    expect(c.lines.length).toBeLessThanOrEqual(2);
    for (const l of c.lines) expect(l.length).toBeLessThanOrEqual(width);
    expect(c.end).toBeGreaterThan(c.start);
    if (i > 0) expect(c.start).toBe(cues[i - 1]!.end); // contiguous
  }
}

describe('rollText (the line rule the files and the pages share)', () => {
  it('adds words to the last line, starts a new one when full, keeps the last maxLines', () => {
    expect(rollText([], 'a man walks to the door', ' ', 12, 2)).toEqual(['a man walks', 'to the door']);
    expect(rollText(['a man walks', 'to the door'], 'and opens it', ', ', 12, 2)).toEqual(['to the door,', 'and opens it']);
    // '' continues the last word (a token inside a word); a word longer than a line is cut.
    expect(rollText(['it is wal'], 'king', '', 12, 2)).toEqual(['it is', 'walking']);
    expect(rollText(['it is wal'], 'ks', '', 12, 2)).toEqual(['it is walks']);
    expect(rollText([], 'x'.repeat(30), ' ', 12, 5)).toEqual(['x'.repeat(12), 'x'.repeat(12), 'x'.repeat(6)]);
    // wrap is the same rule with no line limit.
    expect(wrap('a man walks to the door', 12)).toEqual(['a man walks', 'to the door']);
  });
});

describe('rolling segmenter', () => {
  it('flows the text through two lines, the older scrolling up; silent frames change nothing', () => {
    const cues = roll(['a red circle', 'it moves left', '', '', 'it stops', 'a blue square enters'], 20);
    expect(cues.map((c) => [c.start, c.end, c.lines])).toEqual([
      [0, 0.5, ['a red circle']],
      [0.5, 2, ['a red circle, it', 'moves left']],
      [2, 2.5, ['a red circle, it', 'moves left, it stops']],
      [2.5, 3, ['moves left, it stops', 'a blue square enters']], // no room for the comma: dropped
    ]);
    expectRollingShape(cues, 20);
  });

  it('never more than two lines of at most N characters, cues contiguous, whatever the input', () => {
    const words = ['a', 'man', 'walks', 'to', 'the', 'big', 'red', 'door', 'and', 'opens', 'it', 'slowly', 'x'.repeat(25)];
    const texts = Array.from({ length: 200 }, (_, i) => (i % 7 === 3 ? '' : words.slice(i % 5, (i % 5) + 1 + (i % 4)).join(' ')));
    const cues = roll(texts, 16);
    expect(cues.length).toBeGreaterThan(150);
    expectRollingShape(cues, 16);
  });

  it('ends the last cue with the stream', () => {
    expect(roll(['hello'], 20, 0.5).map((c) => [c.start, c.end])).toEqual([[0, 0.5]]);
    expect(roll(['hello', '', '', ''], 20).map((c) => [c.start, c.end])).toEqual([[0, 2]]);
  });

  it('writes SRT and WebVTT that ffmpeg parses', async () => {
    const cues = roll(['one two three four five', 'six seven eight', 'nine ten eleven twelve'], 16);
    const tmp = setupCliTests('casa-rolling-unit-');
    for (const format of ['srt', 'vtt'] as const) {
      const file = path.join(tmp.dir, `r.${format}`);
      writeFileSync(file, formatSubtitles(format, cues));
      const back = await ffmpegReadsSubtitles(file, format === 'srt' ? 'srt' : 'webvtt');
      expect(back).toContain('nine ten eleven');
    }
  });
});

describe('the pages\' rolling captions (browser code, run here in a vm context)', () => {
  type Roller = { token(f: number, t: string): void; caption(f: number, t: string): void; lines: string[]; fresh: number };
  const make = (width: number, lines: number): Roller => {
    const ctx = vm.createContext({});
    vm.runInContext(`${PAGE_CLIENT_JS}\nthis.make = (w, n) => new RollingCaptions(w, n);`, ctx);
    return (ctx as { make: (w: number, n: number) => Roller }).make(width, lines);
  };
  const frames = ['a red circle', ' it moves left', '', 'It stops.', ' a blue square enters from the top', 'it grows'];

  it('shows the same lines as the rolling subtitle files, fed token by token', () => {
    const seg = new RollingSegmenter({ maxLineChars: 20 });
    const r = make(20, 2);
    frames.forEach((text, f) => {
      // Word tokens as the engine sends them (" it", " moves", …), then the caption.
      for (const tok of text.match(/\s*\S+/g) ?? []) r.token(f, tok);
      r.caption(f, text.trim());
      seg.push({ start: f, end: f + 1, text: text.trim() }); // the daemon's captions are trimmed
      if (text.trim() !== '') {
        expect(r.lines).toEqual(seg.current!.lines);
        expect(r.fresh).toBe(text.trim().split(' ').length);
      }
    });
  });

  it('a caption whose tokens were not (all) received adds the rest', () => {
    const r = make(20, 2);
    r.token(0, 'a red');
    r.caption(0, 'a red circle');
    r.caption(1, 'it moves');
    expect(r.lines).toEqual(['a red circle, it', 'moves']);
  });
});

describe('casa-live caption --subtitle-style rolling', () => {
  const tmp = setupCliTests('casa-rolling-', { 'clip.mp4': 6 });

  it('writes rolling SRT and WebVTT: parsed by ffmpeg, at most two lines, contiguous cues', async () => {
    const out = (n: string): string => path.join(tmp.dir, n);
    const r = await runCli(['caption', tmp.clip('clip.mp4'), '--model', DEV_MODEL, '--seed', '3', '--quiet', '--subtitle-style', 'rolling', '--line-length', '24', '--srt', out('r.srt'), '--vtt', out('r.vtt')]);
    expect(r.code, r.stderr).toBe(0);
    for (const [file, format] of [
      ['r.srt', 'srt'],
      ['r.vtt', 'webvtt'],
    ] as const) {
      await ffmpegReadsSubtitles(out(file), format);
      const packets = await subtitlePackets(out(file));
      expect(packets.length).toBeGreaterThan(1);
      for (let i = 1; i < packets.length; i++) expect(packets[i]!.start).toBeCloseTo(packets[i - 1]!.end, 3);
      const blocks = readFileSync(out(file), 'utf8').replace(/^WEBVTT\n\n/, '').trim().split(/\n\n+/);
      for (const b of blocks) {
        const text = b.split('\n').slice(2);
        expect(text.length).toBeGreaterThan(0);
        expect(text.length).toBeLessThanOrEqual(2);
        for (const l of text) expect(l.length).toBeLessThanOrEqual(24);
      }
    }
    const bad = await runCli(['caption', tmp.clip('clip.mp4'), '--model', DEV_MODEL, '--subtitle-style', 'scroll']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--subtitle-style must be one of block, rolling, not "scroll"');
  });
});

// Subtitle segmentation (merging, line-length limit, silent frames, timing), SRT / WebVTT
// formatting and escaping, files valid while being written, JSONL, the burn-in filter
// escaping, the demo score.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { escapeFilterValue } from '../../src/sinks/burn-in.js';
import { JsonlWriter } from '../../src/sinks/jsonl.js';
import { SubtitleSegmenter, wrap, type Cue } from '../../src/sinks/segmenter.js';
import { SubtitleFileWriter, formatSubtitles } from '../../src/sinks/subtitles.js';
import { srtTime, vttTime } from '../../src/sinks/timecode.js';
import { scoreAgainstTruth } from '../../src/cli/caption.js';

const dir = mkdtempSync(path.join(tmpdir(), 'casa-sinks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Frames at 2 fps with the given texts. */
function run(texts: string[], opts: ConstructorParameters<typeof SubtitleSegmenter>[0] = {}, streamEnd?: number): Cue[] {
  const seg = new SubtitleSegmenter(opts);
  const out: Cue[] = [];
  texts.forEach((text, i) => out.push(...seg.push({ start: i / 2, end: (i + 1) / 2, text })));
  out.push(...seg.flush(streamEnd ?? texts.length / 2));
  return out;
}

describe('subtitle segmenter', () => {
  it('shows each piece from its frame time, nothing for silent frames', () => {
    const cues = run(['', 'a red circle enters', '', '', '', 'it stops', '', '']);
    expect(cues).toEqual([
      { index: 1, start: 0.5, end: 1.5, lines: ['a red circle enters'] },
      { index: 2, start: 2.5, end: 3.5, lines: ['it stops'] },
    ]);
  });

  it('rolls consecutive pieces up into lines of at most maxLineChars, two lines a cue', () => {
    const cues = run(['it turns red', 'it moves left', 'it stops', 'a big blue square enters from the top', 'it grows']);
    expect(cues.map((c) => [c.start, c.end, c.lines])).toEqual([
      // Each piece appears at its own frame's time, added to what is on screen.
      [0, 0.5, ['it turns red']],
      [0.5, 1, ['it turns red, it moves left']],
      [1, 1.5, ['it turns red, it moves left, it stops']],
      // A piece that does not fit on the line starts the next one.
      [1.5, 2, ['it turns red, it moves left, it stops,', 'a big blue square enters from the top']],
      // No room left in two lines: a clean screen.
      [2, 2.5, ['it grows']],
    ]);
    for (const c of run(['x'.repeat(10), 'y '.repeat(30), 'z'.repeat(50)], { maxLineChars: 20 })) {
      for (const l of c.lines) expect(l.length).toBeLessThanOrEqual(20);
    }
  });

  it('joins after punctuation with a space, a capitalised piece as a new sentence', () => {
    expect(run(['The man walks.', 'He stops']).at(-1)!.lines).toEqual(['The man walks. He stops']);
    expect(run(['the man walks', 'He stops']).at(-1)!.lines).toEqual(['the man walks. He stops']);
    expect(run(['it moves', ', then stops']).at(-1)!.lines).toEqual(['it moves, then stops']);
  });

  it('keeps a cue at least minDurationSeconds unless the next one starts, never past the stream end', () => {
    const cues = run(['hello', '', 'world', '', '', '', ''], { minDurationSeconds: 1.2 });
    expect(cues.map((c) => [c.start, c.end])).toEqual([
      [0, 1], // cut by the next cue
      [1, 2.2],
    ]);
    expect(run(['bye'], { minDurationSeconds: 3 }, 0.5).map((c) => [c.start, c.end])).toEqual([[0, 0.5]]);
  });

  it('emits cues as soon as they are final (files can be written live)', () => {
    const seg = new SubtitleSegmenter();
    expect(seg.push({ start: 0, end: 0.5, text: 'one' })).toEqual([]);
    expect(seg.push({ start: 0.5, end: 1, text: '' })).toEqual([]); // may still linger to 1.0
    expect(seg.push({ start: 1, end: 1.5, text: '' })).toEqual([{ index: 1, start: 0, end: 1, lines: ['one'] }]);
  });

  it('cue times strictly increase, whatever the input', () => {
    const seg = new SubtitleSegmenter({ minDurationSeconds: 2 });
    const cues: Cue[] = [];
    let t = 0;
    for (let i = 0; i < 300; i++) {
      const dt = [0.5, 0.5, 0.0004, 1, 0.25][i % 5]!;
      const text = ['', 'a', 'bb cc', '', 'ddd eee fff ggg hhh iii jjj kkk lll mmm nnn ooo'][(i * 7) % 6] ?? '';
      cues.push(...seg.push({ start: t, end: t + 0.5, text }));
      t += dt;
    }
    cues.push(...seg.flush());
    expect(cues.length).toBeGreaterThan(10);
    cues.forEach((c, i) => {
      expect(c.index).toBe(i + 1);
      expect(c.end).toBeGreaterThan(c.start);
      if (i > 0) expect(c.start).toBeGreaterThanOrEqual(cues[i - 1]!.end);
    });
  });

  it('wraps words greedily and cuts words longer than a line', () => {
    expect(wrap('aaa bbb ccc', 7)).toEqual(['aaa bbb', 'ccc']);
    expect(wrap('abcdefghij k', 4)).toEqual(['abcd', 'efgh', 'ij k']);
  });
});

describe('subtitle files', () => {
  it('formats SRT and WebVTT times and escapes cue text', () => {
    expect(srtTime(3723.4567)).toBe('01:02:03,457');
    expect(vttTime(0.5)).toBe('00:00:00.500');
    const cues: Cue[] = [{ index: 1, start: 0, end: 1.25, lines: ['a <b> & c --> d', '{\\an8}x'] }];
    expect(formatSubtitles('srt', cues)).toBe('1\n00:00:00,000 --> 00:00:01,250\na <b> & c -> d\n(\\an8)x\n\n');
    expect(formatSubtitles('vtt', cues)).toBe('WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.250\na &lt;b&gt; &amp; c --&gt; d\n{\\an8}x\n\n');
  });

  it('is a valid file at every moment while captions arrive, and complete after close', () => {
    const srt = path.join(dir, 'live.srt');
    const vtt = path.join(dir, 'live.vtt');
    const ws = new SubtitleFileWriter(srt, 'srt');
    const wv = new SubtitleFileWriter(vtt, 'vtt');
    expect(readFileSync(srt, 'utf8')).toBe('');
    expect(readFileSync(vtt, 'utf8')).toBe('WEBVTT\n\n');
    const texts = ['one', '', '', 'two', 'three', '', '', ''];
    texts.forEach((text, i) => {
      for (const w of [ws, wv]) w.caption({ start: i / 2, end: (i + 1) / 2, text });
      // Every cue in the file is whole: blocks separated by blank lines, each with time and text.
      const content = readFileSync(srt, 'utf8');
      if (content) expect(content).toMatch(/^(\d+\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n.+\n\n)+$/);
    });
    expect(readFileSync(srt, 'utf8')).toBe(
      '1\n00:00:00,000 --> 00:00:01,000\none\n\n2\n00:00:01,500 --> 00:00:02,000\ntwo\n\n3\n00:00:02,000 --> 00:00:03,000\ntwo, three\n\n',
    );
    ws.close(4);
    wv.close(4);
    ws.close();
    expect(ws.cues).toBe(3);
    expect(readFileSync(vtt, 'utf8')).toMatch(/^WEBVTT\n\n1\n00:00:00\.000 --> 00:00:01\.000\none\n\n2\n/);
  });

  it('JSONL: one whole event per line', () => {
    const file = path.join(dir, 'ev.jsonl');
    const w = new JsonlWriter(file);
    w.write({ type: 'token', stream: 's', seq: 1, frame: 0, pts: 0, text: 'a\nb' });
    w.write({ type: 'caption', stream: 's', seq: 2, frame: 0, start: 0, end: 0.5, text: 'a\nb', latencyMs: 3 });
    expect(readFileSync(file, 'utf8').split('\n')).toHaveLength(3);
    w.close();
    expect(w.lines).toBe(2);
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).seq)).toEqual([1, 2]);
  });
});

describe('burn-in and demo score', () => {
  it('escapes a path for the subtitles filter (option level, then graph level)', () => {
    expect(escapeFilterValue('/tmp/a.srt')).toBe('/tmp/a.srt');
    expect(escapeFilterValue("/tmp/it's:[x],y;z\\w.srt")).toBe("/tmp/it\\\\\\'s\\\\:\\[x\\]\\,y\\;z\\\\\\\\w.srt");
  });

  it('scores per-frame captions against a truth file', () => {
    const truth = path.join(dir, 'demo.json');
    writeFileSync(truth, JSON.stringify({ fps: 2, captions: ['a red circle enters', '', 'it stops', ''] }));
    const texts = new Map([
      [0, 'a red circle enters'],
      [1, ''],
      [2, 'it turns'],
      [3, ''],
    ]);
    expect(scoreAgainstTruth(truth, texts, 2)).toBe('ground truth: 3/4 frames captioned exactly right (75.0%)');
    expect(scoreAgainstTruth(truth, texts, 1)).toBeUndefined(); // other fps: frames do not line up
  });
});

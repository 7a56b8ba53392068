import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BundleTokenizer } from '../../src/model/tokenizer.js';
import { completeUtf8Length, StreamDetokenizer } from '../../src/session/detokenizer.js';
import { DEV_CASA } from './helpers.js';

const tokenizer = new BundleTokenizer(JSON.parse(readFileSync(`${DEV_CASA}/tokenizer.json`, 'utf8')));

function stream(text: string, granularity: 'word' | 'piece'): { pieces: string[]; ids: number[] } {
  const ids = tokenizer.encode(text);
  const d = new StreamDetokenizer(tokenizer, granularity);
  const pieces: string[] = [];
  for (const id of ids) {
    const p = d.push(id);
    if (p) pieces.push(p);
  }
  const rest = d.flush();
  if (rest) pieces.push(rest);
  return { pieces, ids };
}

describe('completeUtf8Length', () => {
  const b = (...xs: number[]) => Uint8Array.from(xs);
  it('stops before an incomplete character', () => {
    expect(completeUtf8Length(b(0x61), 1)).toBe(1);
    expect(completeUtf8Length(b(0x61, 0xc3), 2)).toBe(1); // é = C3 A9
    expect(completeUtf8Length(b(0x61, 0xc3, 0xa9), 3)).toBe(3);
    expect(completeUtf8Length(b(0xe2, 0x98), 2)).toBe(0); // ☃ = E2 98 83
    expect(completeUtf8Length(b(0xe2, 0x98, 0x83), 3)).toBe(3);
    expect(completeUtf8Length(b(0x20, 0xf0, 0x9f, 0x98), 4)).toBe(1); // 😀 = F0 9F 98 80
    expect(completeUtf8Length(b(0x20, 0xf0, 0x9f, 0x98, 0x80), 5)).toBe(5);
    expect(completeUtf8Length(b(), 0)).toBe(0);
  });
});

describe('StreamDetokenizer', () => {
  const caption = ' a big yellow triangle enters from the bottom';

  it('word mode: multi-token words come out whole and right', () => {
    const { pieces, ids } = stream(caption, 'word');
    expect(ids.length).toBeGreaterThan(8); // " big" is " b" + "i" + "g", " yellow" is " " + "y" + "e" + "ll" + "ow"
    expect(pieces).toEqual([' a', ' big', ' yellow', ' triangle', ' enters', ' from', ' the', ' bottom']);
    expect(pieces.join('')).toBe(caption);
  });

  it('piece mode: every token as soon as it completes a character', () => {
    const { pieces, ids } = stream(caption, 'piece');
    expect(pieces.length).toBe(ids.length);
    expect(pieces.join('')).toBe(caption);
  });

  it('never splits a multi-byte character across pieces', () => {
    const text = ' café ☃ 😀 naïve';
    for (const g of ['word', 'piece'] as const) {
      const { pieces, ids } = stream(text, g);
      expect(ids.length).toBeGreaterThan(text.length / 2);
      expect(pieces.join('')).toBe(text);
      for (const p of pieces) expect(p).not.toContain('\ufffd');
    }
    expect(stream(text, 'word').pieces).toEqual([' café', ' ☃', ' 😀', ' naïve']);
    expect(stream(' ☃', 'piece').pieces).toEqual([' ', '☃']);
  });

  it('special tokens produce no text', () => {
    const d = new StreamDetokenizer(tokenizer, 'piece');
    expect(d.push(3)).toBe(''); // <|im_end|>
    expect(d.push(4)).toBe('');
    expect(d.flush()).toBe('');
  });

  it('flush ends a frame with what is held; a new frame starts clean', () => {
    const d = new StreamDetokenizer(tokenizer, 'word');
    for (const id of tokenizer.encode(' it stops')) d.push(id);
    expect(d.flush()).toBe(' stops');
    expect(d.flush()).toBe('');
    const out = tokenizer.encode(' it moves').map((id) => d.push(id));
    expect(out.join('') + d.flush()).toBe(' it moves');
  });

  it('decode matches the fixture captions', () => {
    const script = JSON.parse(readFileSync(`${DEV_CASA}/fixtures/session.json`, 'utf8')) as {
      tokenization: { text: string; ids: number[] }[];
    };
    for (const { text, ids } of script.tokenization) expect(tokenizer.decode(ids)).toBe(text.replace(/<\|[a-z_]+\|>/g, ''));
  });
});

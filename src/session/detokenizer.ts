/**
 * Streaming detokenisation. Byte-level BPE tokens are runs of bytes: a character may span
 * tokens (multi-byte UTF-8) and so may a word ("tri" + "angle"). The detokenizer only ever
 * emits complete UTF-8 text, and in `word` granularity (the default) only complete words:
 * a piece is released when the next token starts a new word (begins with whitespace) or
 * the frame's text ends. In `piece` granularity every token's text is released as soon as
 * it completes a character. Special tokens (EOS, markers) produce no text.
 *
 * Concatenating the pieces of a frame gives exactly the decoded text of its tokens.
 */
import type { BundleTokenizer } from '../model/tokenizer.js';

export type TokenGranularity = 'word' | 'piece';

const decoder = new TextDecoder('utf-8');

/** Length of the longest prefix of bytes[0, n) that ends on a character boundary. */
export function completeUtf8Length(bytes: Uint8Array, n: number): number {
  let i = n - 1;
  let continuation = 0;
  while (i >= 0 && continuation < 3 && ((bytes[i] as number) & 0xc0) === 0x80) {
    i--;
    continuation++;
  }
  if (i < 0) return n;
  const lead = bytes[i] as number;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return n - i < need ? i : n;
}

function startsWord(bytes: Uint8Array): boolean {
  const b = bytes[0];
  return b === 0x20 || b === 0x0a || b === 0x09 || b === 0x0d;
}

export class StreamDetokenizer {
  private readonly table: readonly (Uint8Array | undefined)[];
  private pending = new Uint8Array(64);
  private pendingLength = 0;

  constructor(
    tokenizer: BundleTokenizer,
    readonly granularity: TokenGranularity = 'word',
  ) {
    this.table = tokenizer.tokenBytes;
  }

  /** Adds a sampled token; returns the text now complete ('' when none). */
  push(id: number): string {
    const bytes = this.table[id];
    if (!bytes || bytes.length === 0) return '';
    let out = '';
    if (this.granularity === 'word' && this.pendingLength > 0 && startsWord(bytes)) out = this.take(this.pendingLength);
    this.add(bytes);
    if (this.granularity === 'piece') out += this.take(completeUtf8Length(this.pending, this.pendingLength));
    return out;
  }

  /** End of the frame's text: everything still held (incomplete bytes become U+FFFD). */
  flush(): string {
    return this.take(this.pendingLength);
  }

  private add(bytes: Uint8Array): void {
    const need = this.pendingLength + bytes.length;
    if (need > this.pending.length) {
      const grown = new Uint8Array(Math.max(need, this.pending.length * 2));
      grown.set(this.pending.subarray(0, this.pendingLength));
      this.pending = grown;
    }
    this.pending.set(bytes, this.pendingLength);
    this.pendingLength = need;
  }

  private take(n: number): string {
    if (n <= 0) return '';
    const text = decoder.decode(this.pending.subarray(0, n));
    this.pending.copyWithin(0, n, this.pendingLength);
    this.pendingLength -= n;
    return text;
  }
}

/**
 * The bundle's tokenizer.json, loaded with @huggingface/tokenizers (encoding), plus the
 * per-token byte table decoding and the streaming detokenizer use (byte-level BPE: every
 * token is a run of bytes; words and multi-byte characters may span tokens). Only
 * byte-level BPE tokenizers are accepted (docs/model-format.md; Qwen2 and GPT-2 style).
 */
import { Tokenizer } from '@huggingface/tokenizers';

/** GPT-2's reversible byte → printable-character map used by the ByteLevel pre-tokenizer/decoder. */
function byteDecoder(): Map<string, number> {
  const bs: number[] = [];
  for (let b = '!'.charCodeAt(0); b <= '~'.charCodeAt(0); b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const map = new Map<string, number>();
  bs.forEach((b, i) => map.set(String.fromCharCode(cs[i] as number), b));
  return map;
}

const utf8 = new TextDecoder('utf-8');

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number> | unknown };
  decoder?: { type?: string } | null;
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

export class BundleTokenizer {
  private readonly tok: Tokenizer;
  /** Distinct ids (vocabulary and added tokens). */
  readonly size: number;
  /** Largest id + 1. */
  readonly idLimit: number;
  /** Bytes of each token's text (empty for special tokens). */
  readonly tokenBytes: readonly (Uint8Array | undefined)[];
  private readonly specialIds: Set<number>;

  constructor(json: unknown) {
    const j = json as TokenizerJson;
    this.tok = new Tokenizer(json as object, {});
    const vocab = this.tok.get_vocab(true);
    this.size = vocab.size;
    let max = -1;
    for (const id of vocab.values()) if (id > max) max = id;
    this.idLimit = max + 1;
    this.specialIds = new Set((j.added_tokens ?? []).filter((t) => t.special !== false).map((t) => t.id));
    if (j.decoder?.type !== 'ByteLevel' || j.model?.type !== 'BPE') {
      throw new Error(
        `model type ${String(j.model?.type)} with decoder ${String(j.decoder?.type)} is not supported; the runtime needs a byte-level BPE tokenizer (model BPE, decoder ByteLevel)`,
      );
    }
    const unmap = byteDecoder();
    const table: (Uint8Array | undefined)[] = new Array(this.idLimit);
    for (const [token, id] of vocab) {
      if (this.specialIds.has(id)) {
        table[id] = new Uint8Array(0);
        continue;
      }
      const bytes: number[] = [];
      let ok = true;
      for (const ch of token) {
        const b = unmap.get(ch);
        if (b === undefined) {
          ok = false;
          break;
        }
        bytes.push(b);
      }
      // A non-special added token is written as plain text.
      table[id] = ok ? Uint8Array.from(bytes) : new TextEncoder().encode(token);
    }
    this.tokenBytes = table;
  }

  /** Ids of `text`, special tokens written literally recognised, nothing added around. */
  encode(text: string): number[] {
    if (text === '') return [];
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /** Text of `ids`, special tokens left out. */
  decode(ids: readonly number[]): string {
    let n = 0;
    for (const id of ids) n += this.tokenBytes[id]?.length ?? 0;
    const all = new Uint8Array(n);
    let o = 0;
    for (const id of ids) {
      const b = this.tokenBytes[id];
      if (b) {
        all.set(b, o);
        o += b.length;
      }
    }
    return utf8.decode(all);
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
}

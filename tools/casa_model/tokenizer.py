"""Byte-level BPE (the GPT-2 / Qwen family), trained on the world's commentary.

Writes a Hugging Face `tokenizer.json` (BPE model, ByteLevel pre-tokenizer and decoder,
special tokens as added tokens) that the runtime loads with @huggingface/tokenizers, and
encodes exactly as that library does for the ASCII text this world produces.
"""
from __future__ import annotations

import collections
import json
import re
from typing import Dict, Iterable, List, Sequence, Tuple

SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
# GPT-2's pre-tokenisation pattern, restricted to ASCII letters/digits (the world is ASCII).
_PRETOKENIZE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte → printable-character map used by ByteLevel."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_BYTE_MAP = bytes_to_unicode()
_BYTE_UNMAP = {c: b for b, c in _BYTE_MAP.items()}


def _pretokens(text: str) -> List[str]:
    return ["".join(_BYTE_MAP[b] for b in piece.encode("utf-8")) for piece in _PRETOKENIZE.findall(text)]


class ByteLevelBPE:
    def __init__(self, vocab: Dict[str, int], merges: List[Tuple[str, str]], specials: Sequence[str] = SPECIAL_TOKENS):
        self.vocab = vocab
        self.inverse = {i: t for t, i in vocab.items()}
        self.merges = merges
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.specials = list(specials)
        self._special_re = re.compile("(" + "|".join(re.escape(s) for s in self.specials) + ")")

    @property
    def size(self) -> int:
        return len(self.vocab)

    def token_id(self, token: str) -> int:
        return self.vocab[token]

    def _bpe(self, word: str) -> List[str]:
        parts = list(word)
        while len(parts) > 1:
            best = min(((self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))))
            if best[0] == 1 << 30:
                break
            i = best[1]
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        return parts

    def encode(self, text: str) -> List[int]:
        ids: List[int] = []
        for chunk in self._special_re.split(text):
            if not chunk:
                continue
            if chunk in self.vocab and chunk in self.specials:
                ids.append(self.vocab[chunk])
                continue
            for word in _pretokens(chunk):
                ids.extend(self.vocab[p] for p in self._bpe(word))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        out = bytearray()
        text = []
        for i in ids:
            tok = self.inverse[int(i)]
            if tok in self.specials:
                continue
            out.extend(_BYTE_UNMAP[c] for c in tok)
        text.append(out.decode("utf-8", errors="replace"))
        return "".join(text)

    def to_hf_json(self) -> dict:
        added = [
            {"id": self.vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for s in self.specials
        ]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {
                "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                "vocab": self.vocab,
                "merges": [f"{a} {b}" for a, b in self.merges],
            },
        }

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_hf_json(), f, ensure_ascii=False, indent=1)

    @classmethod
    def load(cls, path: str) -> "ByteLevelBPE":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        model = data["model"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        vocab = dict(model["vocab"])
        specials = [t["content"] for t in data["added_tokens"]]
        return cls(vocab, merges, specials)


def train_bpe(corpus: Iterable[str], num_merges: int) -> ByteLevelBPE:
    """Classic BPE: repeatedly merge the most frequent adjacent pair (ties: lexical order)."""
    words = collections.Counter()
    for text in corpus:
        words.update(_pretokens(text))
    vocab: Dict[str, int] = {s: i for i, s in enumerate(SPECIAL_TOKENS)}
    for b in range(256):
        vocab[_BYTE_MAP[b]] = len(vocab)
    splits = {w: list(w) for w in words}
    merges: List[Tuple[str, str]] = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for w, n in words.items():
            p = splits[w]
            for a, b in zip(p, p[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], tuple(-ord(c) for c in kv[0][0] + "\x00" + kv[0][1])))[0]
        merges.append(best)
        merged = best[0] + best[1]
        vocab.setdefault(merged, len(vocab))
        for w in splits:
            p = splits[w]
            i, out = 0, []
            while i < len(p):
                if i + 1 < len(p) and p[i] == best[0] and p[i + 1] == best[1]:
                    out.append(merged)
                    i += 2
                else:
                    out.append(p[i])
                    i += 1
            splits[w] = out
    return ByteLevelBPE(vocab, merges)

"""Streaming text of one frame, as token events carry it (docs/architecture.md §Public API):
complete characters only, and in `word` granularity complete words — text is released up
to the start of the newest word once that word has begun (or when the frame's text ends).
Concatenated, a frame's pieces are exactly the decoded text of its tokens.

Decoding the frame's ids so far on every token (≤ maxNewTokensPerFrame of them) works with
any tokenizer: byte-level pieces that end inside a character decode to U+FFFD, which is
held back until the character completes.
"""
from __future__ import annotations

from typing import Callable, List, Sequence

Decode = Callable[[Sequence[int]], str]


class FrameText:
    def __init__(self, decode: Decode, granularity: str = "word"):
        self.decode = decode
        self.word = granularity == "word"
        self.ids: List[int] = []
        self.sent = 0

    def push(self, token: int) -> str:
        """Adds a sampled token; returns the text now complete ('' when none)."""
        self.ids.append(token)
        text = self.decode(self.ids)
        stable = len(text.rstrip("\ufffd"))
        if self.word:
            stable = self._last_word_start(text, stable)
        return self._take(text, stable)

    def flush(self) -> str:
        """End of the frame's text: everything not sent yet."""
        text = self.decode(self.ids) if self.ids else ""
        return self._take(text, len(text))

    def text(self) -> str:
        return self.decode(self.ids) if self.ids else ""

    def _last_word_start(self, text: str, limit: int) -> int:
        i = limit
        while i > self.sent and not text[i - 1].isspace():
            i -= 1
        # text[i - 1] is whitespace: the newest word starts there (its leading space with it)
        return i - 1 if i > self.sent else self.sent

    def _take(self, text: str, end: int) -> str:
        if end <= self.sent:
            return ""
        piece = text[self.sent:end]
        self.sent = end
        return piece

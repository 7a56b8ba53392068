"""Streaming inference in PyTorch with explicit caches — the same step functions that are
exported to ONNX, driven the way the runtime drives them (DESIGN §3). Used for evaluation,
for the parity fixtures and by the tests that check it against the packed path."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .data import FRAME_OPENING, PROMPT, Special, normalise
from .model import CasaModel
from .tokenizer import ByteLevelBPE


class Session:
    def __init__(self, model: CasaModel, tok: ByteLevelBPE):
        self.model = model
        self.cfg = model.cfg
        self.tok = tok
        self.sp = Special.of(tok)
        cfg = self.cfg
        c = len(cfg.active_casa_layers)
        self.past_k = torch.zeros(cfg.layers, 1, cfg.kv_heads, 0, cfg.head_dim)
        self.past_v = torch.zeros_like(self.past_k)
        self.img_k = torch.zeros(c, 1, cfg.kv_heads, 0, cfg.head_dim)
        self.img_v = torch.zeros_like(self.img_k)
        self.win_k = torch.zeros(c, 1, cfg.kv_heads, 0, cfg.head_dim)
        self.win_v = torch.zeros_like(self.win_k)
        self.pos = 0
        self.wpos = 0
        self.frames_seen = 0
        self.text_tokens = 0

    @torch.no_grad()
    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        """Feeds text tokens (prefill or one decode step); returns logits [T, V]."""
        t = len(ids)
        input_ids = torch.tensor([list(ids)], dtype=torch.long)
        pos = torch.arange(self.pos, self.pos + t)[None]
        if self.cfg.fusion == "casa":
            wpos = torch.arange(self.wpos + 1, self.wpos + t + 1)[None]
            logits, nk, nv, nwk, nwv = self.model.decoder_step(
                input_ids, pos, wpos, self.past_k, self.past_v, self.img_k, self.img_v, self.win_k, self.win_v)
            self.win_k = torch.cat([self.win_k, nwk], 3)
            self.win_v = torch.cat([self.win_v, nwv], 3)
        else:
            empty = torch.zeros(1, 0, self.cfg.hidden)
            logits, nk, nv = self.model.insertion_step(input_ids, empty, pos, self.past_k, self.past_v)
        self.past_k = torch.cat([self.past_k, nk], 3)
        self.past_v = torch.cat([self.past_v, nv], 3)
        self.pos += t
        self.wpos += t
        self.text_tokens += t
        return logits[0]

    @torch.no_grad()
    def start_frame(self, rgb_u8: np.ndarray) -> torch.Tensor:
        """Starts a frame's window and prefills its markers; returns the logits of the last marker."""
        px = torch.from_numpy(normalise(rgb_u8[None]))
        embeds = self.model.vision(px)
        opening = self.tok.encode(FRAME_OPENING) if self.frames_seen == 0 and FRAME_OPENING else []
        self.frames_seen += 1
        if self.cfg.fusion == "casa":
            self.img_k, self.img_v = self.model.casa_kv(embeds)
            c = self.img_k.shape[0]
            self.win_k = torch.zeros(c, 1, self.cfg.kv_heads, 0, self.cfg.head_dim)
            self.win_v = torch.zeros_like(self.win_k)
            self.wpos = 0
            return self.feed([self.sp.pre_image, self.sp.post_image] + opening)[-1]
        # insertion: pre-image marker, then the image tokens and the post-image marker in one chunk
        self.feed([self.sp.pre_image])
        n = embeds.shape[1]
        ids = [self.sp.post_image] + opening
        pos = torch.arange(self.pos, self.pos + n + len(ids))[None]
        logits, nk, nv = self.model.insertion_step(torch.tensor([ids]), embeds, pos, self.past_k, self.past_v)
        self.past_k = torch.cat([self.past_k, nk], 3)
        self.past_v = torch.cat([self.past_v, nv], 3)
        self.pos += n + len(ids)
        self.text_tokens += len(ids)
        return logits[0, -1]

    def prefill_prompt(self) -> torch.Tensor:
        return self.feed(self.tok.encode(PROMPT))[-1]

    @torch.no_grad()
    def caption_frame(self, rgb_u8: np.ndarray, max_new_tokens: int) -> List[int]:
        """Greedy caption of one frame; every window's text ends with EOS."""
        logits = self.start_frame(rgb_u8)
        out: List[int] = []
        while True:
            nxt = int(torch.argmax(logits))
            if nxt == self.sp.eos or len(out) >= max_new_tokens:
                self.feed([self.sp.eos])
                return out
            out.append(nxt)
            logits = self.feed([nxt])[-1]


def caption_clip(model: CasaModel, tok: ByteLevelBPE, frames_u8: np.ndarray, max_new_tokens: int = 24) -> List[str]:
    s = Session(model, tok)
    s.prefill_prompt()
    return [tok.decode(s.caption_frame(f, max_new_tokens)).strip() for f in frames_u8]

"""Bounded context of a session's self-attention cache: the rule of casa-live's ONNX engine
(src/model/kv-cache.ts TextKvCache, docs/architecture.md §Cache and eviction), applied to
the worker's caches so that both engines keep exactly the same tokens.

Before a step of T entries, if length + T > cap: need = length + T − cap,
least = max(evictChunk, need); the cut is the first frame boundary at least `least` past
the sink (at a frame's first step the current end counts too), else the furthest one that
frees `need`, else `least` tokens; [sink, cut) is removed and every kept key after the sink
is re-rotated by −(cut − sink) positions, so positions stay contiguous.
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Protocol

import torch


class KvStore(Protocol):
    def length(self) -> int: ...

    def evict(self, start: int, count: int) -> None:
        """Removes entries [start, start + count) and re-rotates the later keys by −count."""


@dataclasses.dataclass
class Policy:
    max_tokens: float  # math.inf: unbounded
    sink: int
    evict_chunk: int


@dataclasses.dataclass
class FrameSpan:
    start: int
    image_start: int
    image_tokens: int


class BoundedContext:
    def __init__(self, policy: Policy, store: KvStore):
        self.policy = policy
        self.store = store
        self.frames: List[FrameSpan] = []
        self.evictions = 0
        self.evicted_tokens = 0
        self.image_tokens = 0

    def ensure_room(self, tokens: int, frame_start: bool) -> int:
        p = self.store.length()
        cap, sink, chunk = self.policy.max_tokens, self.policy.sink, self.policy.evict_chunk
        if p + tokens <= cap:
            return 0
        need = int(p + tokens - cap)
        least = max(chunk, need)
        boundaries = [f.start for f in self.frames if f.start > sink]
        if frame_start and p > sink:
            boundaries.append(p)
        cut = next((b for b in boundaries if b - sink >= least), None)
        if cut is None:
            enough = [b for b in boundaries if b - sink >= need]
            cut = enough[-1] if enough else None
        count = cut - sink if cut is not None else min(p - sink, least)
        if count < need:
            raise RuntimeError(f"context cap {cap} too small: {p} tokens cached, sink {sink}, step of {tokens} tokens")
        self._evict(sink, count)
        return count

    def mark_frame_start(self) -> None:
        start = self.store.length()
        self.frames.append(FrameSpan(start, start, 0))

    def mark_image_tokens(self, count: int) -> None:
        if self.frames:
            f = self.frames[-1]
            f.image_start = self.store.length()
            f.image_tokens = count
            self.image_tokens += count

    def _evict(self, start: int, count: int) -> None:
        end = start + count
        self.store.evict(start, count)
        kept: List[FrameSpan] = []
        for f in self.frames:
            lo, hi = max(start, f.image_start), min(end, f.image_start + f.image_tokens)
            self.image_tokens -= max(0, hi - lo)
            if f.start < start:
                kept.append(f)
            elif f.start >= end:
                kept.append(FrameSpan(f.start - count, f.image_start - count, f.image_tokens))
            elif f.image_start + f.image_tokens > end:
                kept.append(FrameSpan(start, start, f.image_start + f.image_tokens - max(end, f.image_start)))
        self.frames = kept
        self.evictions += 1
        self.evicted_tokens += count


def inverse_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """θᵢ = theta^(−2i/Dh), computed in float32 as the models' rotary code does."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def rotate_keys(keys: torch.Tensor, delta: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """Keys [..., S, Dh] (rotate-half layout) moved by `delta` positions, computed in float64."""
    half = keys.shape[-1] // 2
    angle = delta * inv_freq.to(torch.float64).to(keys.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    x = keys.to(torch.float64)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(keys.dtype)


def cut_and_rotate(x: torch.Tensor, start: int, count: int, dim: int, inv_freq: "torch.Tensor | None") -> torch.Tensor:
    """x without entries [start, start + count) along `dim`; the entries after them
    re-rotated by −count when `inv_freq` is given (keys), moved as they are otherwise (values)."""
    head = x.narrow(dim, 0, start)
    tail = x.narrow(dim, start + count, x.shape[dim] - start - count)
    if inv_freq is not None:
        tail = rotate_keys(tail.transpose(dim, -2), -count, inv_freq).transpose(dim, -2)
    return torch.cat([head, tail], dim=dim)


def policy_from(options: dict, prompt_tokens: int) -> Policy:
    cap = options["maxContextTokens"]
    sink = options.get("sinkTokens")
    return Policy(math.inf if cap is None else cap, prompt_tokens if sink is None else sink, options["evictChunk"])

"""What the worker's sessions need from a model adapter (tools/casa_worker/session.py).

An adapter loads one model once and drives it for many sessions, one frame at a time:

    info() -> dict                        the `ready` message's model description
    decode(ids) -> str                    text of sampled ids (special tokens left out)
    open(prompt, options) -> OpenedState  a session's state (the torch adapter prefills the prompt)
    start_frame(opened, rgb) -> FrameStart   the frame's image and prefill; logits of the last id
    feed(opened, ids) -> logits           text tokens (a sampled token, the stop token)
    end_frame(opened)                     after the stop token is fed (CA streaming state reset)
    stats(opened) -> dict                 cache figures (docs/worker-protocol.md §stats)
"""
from __future__ import annotations

from typing import Any, List

import torch


class OpenedState:
    """What an adapter's open() returns: its own state and the ids it fed (the prompt)."""

    def __init__(self, state: Any, prompt_ids: List[int]):
        self.state = state
        self.prompt_ids = prompt_ids


class FrameStart:
    """What start_frame() returns: the logits after the frame's prefill and the text ids fed."""

    def __init__(self, logits: torch.Tensor, ids: List[int]):
        self.logits = logits
        self.ids = ids

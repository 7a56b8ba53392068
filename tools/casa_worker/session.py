"""One caption session in the worker: the frame protocol shared by every adapter.

Per frame: the adapter's prefill (image + markers), then up to maxNewTokensPerFrame tokens,
each sampled, sent as text and fed; the frame ends when a stop id is sampled, the token
budget is spent, casa-live asks for a cut, or — with realtimeDeadline — the frame's 1/fps
budget (from the start of the frame) is spent. The stop token recorded in the cache is the
one the model sampled; when the text was cut, the one it sampled last (a different one
would make the context look like concatenated documents). Then the adapter closes the
frame (the CASA streaming state is reset), and the caption is sent with its timings.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .detok import FrameText
from .protocol import WorkerError
from .sampler import Sampler

SAMPLER_KEYS = ("temperature", "topK", "repetitionPenalty", "repetitionPenaltyDecay", "repetitionCountClamp",
                "penaltyIgnore", "eosBias", "seed")
SESSION_KEYS = SAMPLER_KEYS + ("maxNewTokensPerFrame", "maxContextTokens", "evictChunk", "fps")


def frame_rgb(msg: Dict[str, Any]) -> np.ndarray:
    w, h, rgb = msg["width"], msg["height"], msg["rgb"]
    if w <= 0 or h <= 0 or len(rgb) != w * h * 3:
        raise WorkerError("bad_frame", f"frame of {w}x{h} has {len(rgb)} bytes of rgb24, expected {max(w, 0) * max(h, 0) * 3}")
    return np.frombuffer(rgb, dtype=np.uint8).reshape(h, w, 3)


class Session:
    def __init__(self, sid: int, adapter: Any, options: Dict[str, Any]):
        missing = [k for k in SESSION_KEYS if k not in options]
        if missing:
            raise WorkerError("bad_options", f"session options lack {', '.join(missing)}")
        self.id = sid
        self.adapter = adapter
        self.options = options
        info = adapter.info()
        self.stop_ids: List[int] = list(info["stopIds"])
        self.last_stop = self.stop_ids[0]
        self.opened = adapter.open(options.get("prompt"), options)
        self.sampler = Sampler({**options, "stopIds": self.stop_ids}, info.get("vocabSize", 0))
        self.sampler.fed(self.opened.prompt_ids)
        self.cut = threading.Event()
        self.frames = 0
        self.sampled = 0
        self.last_frame_tokens = 0

    def caption_frame(self, msg: Dict[str, Any], send: Callable[[Dict[str, Any]], None]) -> Dict[str, Any]:
        rgb = frame_rgb(msg)
        self.cut.clear()
        t0 = time.perf_counter()
        budget = 1.0 / self.options["fps"] if self.options.get("realtimeDeadline") else None
        start = self.adapter.start_frame(self.opened, rgb)
        self.sampler.fed(start.ids)
        prefill_ms = (time.perf_counter() - t0) * 1000
        text = FrameText(self.adapter.decode, self.options.get("tokenGranularity", "word"))
        piece = lambda s: s and send({"t": "token", "id": msg["id"], "session": self.id, "text": s})
        ids, stop, reason = self._generate(start.logits, text, piece, t0, budget)
        if stop is None:
            self.sampler.fed([self.last_stop])
        else:
            self.last_stop = stop
        self.adapter.feed(self.opened, [self.last_stop])
        self.adapter.end_frame(self.opened)
        piece(text.flush())
        self.frames += 1
        self.last_frame_tokens = len(start.ids) + len(ids) + 1
        frame_ms = (time.perf_counter() - t0) * 1000
        return {
            "t": "caption", "id": msg["id"], "session": self.id, "text": text.text().strip(), "ids": ids,
            "stop": self.last_stop, "end": reason,
            "timings": {"prefillMs": prefill_ms, "frameMs": frame_ms, "tokens": len(ids)},
            "stats": self.stats(),
        }

    def _generate(self, logits, text: FrameText, piece, t0: float, budget: Optional[float]):
        """Samples the frame's text; returns (ids, the stop id sampled or None, why it ended)."""
        ids: List[int] = []
        while len(ids) < self.options["maxNewTokensPerFrame"]:
            tok = self.sampler.sample(logits)
            self.sampler.observe(tok)
            self.sampled += 1
            if tok in self.stop_ids:
                return ids, tok, "stop"
            ids.append(tok)
            piece(text.push(tok))
            logits = self.adapter.feed(self.opened, [tok])
            if self.cut.is_set():
                return ids, None, "cut"
            if budget is not None and time.perf_counter() - t0 >= budget:
                return ids, None, "deadline"
        return ids, None, "length"

    def stats(self) -> Dict[str, Any]:
        return {**self.adapter.stats(self.opened), "frames": self.frames, "sampledTokens": self.sampled,
                "lastFrameTokens": self.last_frame_tokens}

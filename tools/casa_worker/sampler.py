"""Token choice in the worker: the same processors and draw as casa-live's ONNX engine
(src/session/sampler.ts, whose header states the formulas), on torch tensors so that the
logits stay on their device until the chosen id is read.

Order, on one row of logits ℓ:
1. EMA repetition penalty (counts kept over the stream; ignored ids never counted);
2. stop bias: every stop id gets ℓ ← ℓ + eosBias, then ℓ ← ℓ·stopBias (ℓ ≥ 0) or ℓ/stopBias (ℓ < 0);
3. windowed no-repeat n-gram: over the last `noRepeatNgramWindow` tokens fed (prompt,
   markers, sampled tokens, stop tokens), every token that would complete an n-gram already
   seen is removed; stop ids are exempt;
4. top-k (ties with the k-th kept), temperature, softmax; 5. one mulberry32 draw, in id order.
Temperature 0 is the argmax of the raw logits; steps 1–3 apply then only with greedyProcessors.
"""
from __future__ import annotations

import collections
import math
from typing import Deque, Dict, Iterable, List, Optional

import torch

FLOOR = 1e-6


class Mulberry32:
    """The PRNG of src/session/sampler.ts: the same seed gives the same draws."""

    def __init__(self, seed: int):
        self.state = seed & 0xFFFFFFFF

    @staticmethod
    def _imul(a: int, b: int) -> int:
        return (a * b) & 0xFFFFFFFF

    def next(self) -> float:
        self.state = (self.state + 0x6D2B79F5) & 0xFFFFFFFF
        t = self.state
        t = self._imul(t ^ (t >> 15), t | 1)
        t ^= (t + self._imul(t ^ (t >> 7), t | 61)) & 0xFFFFFFFF
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296.0


class EmaCounts:
    """Per-token counts c ← c·decay after every token, the token itself +1 (clamped)."""

    def __init__(self):
        self.scaled: Dict[int, float] = {}
        self.g = 1.0

    def update(self, token: Optional[int], decay: float, clamp: float) -> None:
        if decay == 0:
            self.scaled.clear()
            self.g = 1.0
        else:
            self.g *= decay
            if self.g < 1e-200:
                self.scaled = {k: v * self.g for k, v in self.scaled.items()}
                self.g = 1.0
        if token is not None:
            self.scaled[token] = min(self.get(token) + 1, clamp) / self.g

    def get(self, token: int) -> float:
        c = self.scaled.get(token, 0.0) * self.g
        return 0.0 if c < FLOOR else c

    def live(self) -> Dict[int, float]:
        """Counts ≥ FLOOR (the others are dropped)."""
        out = {}
        for k, v in list(self.scaled.items()):
            c = v * self.g
            if c < FLOOR:
                del self.scaled[k]
            else:
                out[k] = c
        return out


class Sampler:
    def __init__(self, settings: Dict, vocab_size: int):
        self.s = settings
        self.stop_ids: List[int] = list(settings["stopIds"])
        self.ignore = set(settings["penaltyIgnore"])
        self.counts = EmaCounts()
        self.rng = Mulberry32(int(settings["seed"]))
        self.vocab_size = vocab_size
        window = int(settings.get("noRepeatNgramWindow", 0))
        self.history: Deque[int] = collections.deque(maxlen=max(window, 1))

    # ------------------------------------------------------------------ state
    def fed(self, ids: Iterable[int]) -> None:
        """Tokens fed to the model that were not sampled (prompt, markers, a forced stop)."""
        self.history.extend(int(i) for i in ids)

    def observe(self, token: int) -> None:
        counted = None if token in self.ignore else token
        self.counts.update(counted, self.s["repetitionPenaltyDecay"], self.s["repetitionCountClamp"])
        self.history.append(token)

    # ------------------------------------------------------------------ choice
    def sample(self, logits: torch.Tensor) -> int:
        """The next token from one row of logits [V] (not modified)."""
        s = self.s
        greedy = s["temperature"] == 0
        if greedy and not s.get("greedyProcessors", False):
            return int(torch.argmax(logits))
        work = logits.detach().to(torch.float32).clone()
        self._penalise(work)
        self._bias_stops(work)
        self._ban_ngrams(work)
        if greedy:
            return int(torch.argmax(work))
        return self._draw(work)

    def _penalise(self, work: torch.Tensor) -> None:
        penalty = self.s["repetitionPenalty"]
        if penalty == 1:
            return
        live = {k: c for k, c in self.counts.live().items() if k not in self.ignore and k < work.shape[0]}
        if not live:
            return
        idx = torch.tensor(list(live), dtype=torch.long, device=work.device)
        factor = torch.tensor([math.exp(c * math.log(penalty)) for c in live.values()], dtype=torch.float32, device=work.device)
        vals = work[idx]
        work[idx] = torch.where(vals > 0, vals / factor, vals * factor)

    def _bias_stops(self, work: torch.Tensor) -> None:
        add, mul = self.s["eosBias"], self.s.get("stopBias", 1.0)
        if (add == 0 and mul == 1) or not self.stop_ids:
            return
        idx = torch.tensor([i for i in self.stop_ids if i < work.shape[0]], dtype=torch.long, device=work.device)
        vals = work[idx] + add
        if mul != 1:
            vals = torch.where(vals < 0, vals / mul, vals * mul)
        work[idx] = vals

    def banned(self) -> List[int]:
        """Tokens that would repeat an n-gram of the recent window (stop ids excluded)."""
        n = int(self.s.get("noRepeatNgramSize", 0))
        h = list(self.history)
        if n < 1 or len(h) < n - 1:
            return []
        prefix = h[len(h) - (n - 1):] if n > 1 else []
        found = {h[i + n - 1] for i in range(len(h) - n + 1) if h[i:i + n - 1] == prefix}
        return sorted(found - set(self.stop_ids))

    def _ban_ngrams(self, work: torch.Tensor) -> None:
        banned = [i for i in self.banned() if i < work.shape[0]]
        if banned:
            work[torch.tensor(banned, dtype=torch.long, device=work.device)] = float("-inf")

    def _draw(self, work: torch.Tensor) -> int:
        k = int(self.s["topK"])
        v = work.shape[0]
        threshold = torch.topk(work, k).values[-1] if 0 < k < v else torch.tensor(float("-inf"), device=work.device)
        ids = torch.nonzero(work >= threshold).flatten()
        if ids.numel() == 0:
            return int(torch.argmax(work))
        kept = work[ids].to(torch.float64)
        top = kept.max()
        if top == float("-inf"):
            return int(torch.argmax(work))
        weights = torch.exp((kept - top) * (1.0 / self.s["temperature"]))
        cumulative = torch.cumsum(weights, 0)
        target = self.rng.next() * float(cumulative[-1])
        j = int(torch.searchsorted(cumulative, torch.tensor([target], dtype=torch.float64, device=work.device), right=True))
        return int(ids[min(j, ids.numel() - 1)])


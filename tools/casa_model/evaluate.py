"""Held-out evaluation: greedy streaming captions against the world's ground truth."""
from __future__ import annotations

import collections
import time
from typing import Dict, List

import numpy as np

from .model import CasaModel
from .stream import caption_clip
from .tokenizer import ByteLevelBPE
from .world import make_clip, render_clip


def score(pairs: List[tuple]) -> Dict:
    """pairs: (predicted, truth) per frame. Exact match over all frames (silent ones too);
    token F1: word multiset overlap, micro-averaged over frames."""
    exact = sum(p == t for p, t in pairs)
    overlap = pred_n = true_n = 0
    for p, t in pairs:
        pw, tw = collections.Counter(p.split()), collections.Counter(t.split())
        overlap += sum((pw & tw).values())
        pred_n += sum(pw.values())
        true_n += sum(tw.values())
    precision = overlap / pred_n if pred_n else 1.0
    recall = overlap / true_n if true_n else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"frames": len(pairs), "frameExactMatch": round(exact / max(1, len(pairs)), 4), "tokenF1": round(f1, 4),
            "precision": round(precision, 4), "recall": round(recall, 4)}


def evaluate(model: CasaModel, tok: ByteLevelBPE, seeds: List[int], frames: int, max_new_tokens: int = 24) -> Dict:
    start = time.time()
    pairs = []
    examples = []
    for s in seeds:
        clip = make_clip(s, frames)
        pred = caption_clip(model, tok, render_clip(clip, model.cfg.image_size), max_new_tokens)
        pairs += list(zip(pred, clip.captions))
        if len(examples) < 12:
            examples += [{"seed": s, "frame": i, "predicted": p, "truth": t} for i, (p, t) in enumerate(zip(pred, clip.captions)) if p != t][:2]
    out = {"split": "test", "clips": len(seeds), "framesPerClip": frames}
    out.update(score(pairs))
    out["evalSeconds"] = round(time.time() - start, 1)
    out["mistakes"] = examples
    return out

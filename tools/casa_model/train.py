"""Training loop (AdamW, cosine schedule) over pre-rendered world clips."""
from __future__ import annotations

import json
import math
import os
import random
import time
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from .data import (Special, augment, build_sequence, collate, misnamed_history, normalise, redraw_for_two_objects,
                   training_frames)
from .model import CasaModel, ModelConfig
from .tokenizer import ByteLevelBPE
from .world import Clip


def batches(clips: List[Clip], frames_u8: np.ndarray, tok: ByteLevelBPE, cfg: ModelConfig, batch_size: int,
            steps: int, seed: int, span: int, p_window: float, p_gap: float, p_misnamed: float = 0.0,
            p_two: float = 0.0):
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    sp = Special.of(tok)
    clip_frames = frames_u8.shape[1]
    for _ in range(steps):
        idx = [rng.randrange(len(clips)) for _ in range(batch_size)]
        keeps = [training_frames(clip_frames, span, rng, p_window, p_gap) for _ in idx]
        for row in range(batch_size):
            redrawn = redraw_for_two_objects(clips, clip_frames, span, rng, p_window, p_gap, p_two)
            if redrawn:
                idx[row], keeps[row] = redrawn
        seqs = [build_sequence(clips[i], tok, keep, misnamed_history(clips[i], keep, rng, p_misnamed))
                for i, keep in zip(idx, keeps)]
        m = max(len(k) for k in keeps)
        px = np.zeros((batch_size, m) + frames_u8.shape[2:], np.uint8)  # unused tail frames stay black
        for row, (i, keep) in enumerate(zip(idx, keeps)):
            px[row, : len(keep)] = frames_u8[i, keep]
        yield collate(seqs, normalise(augment(px, nrng)), sp, cfg.fusion, cfg.image_tokens)


def loss_of(model: CasaModel, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model.forward_packed(batch)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1), ignore_index=-100)


def train(model: CasaModel, clips: List[Clip], frames_u8: np.ndarray, tok: ByteLevelBPE, *, steps: int,
          batch_size: int, lr: float, seed: int, span: int, p_window: float = 0.45, p_gap: float = 0.2,
          p_misnamed: float = 0.0, p_two: float = 0.0, log_every: int = 50, log=print) -> Dict:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, steps // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    model.train()
    start = time.time()
    history = []
    running = None
    for step, batch in enumerate(batches(clips, frames_u8, tok, model.cfg, batch_size, steps, seed, span, p_window, p_gap,
                                         p_misnamed, p_two)):
        loss = loss_of(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            elapsed = time.time() - start
            history.append({"step": step + 1, "loss": round(running, 4), "seconds": round(elapsed, 1)})
            log(f"[{model.cfg.fusion}] step {step + 1}/{steps} loss {running:.4f} {elapsed / 60:.1f} min")
    model.eval()
    return {"steps": steps, "batchSize": batch_size, "lr": lr, "span": span, "clipFrames": frames_u8.shape[1],
            "pWindow": p_window, "pGap": p_gap, "pMisnamed": p_misnamed, "pTwoObjects": p_two,
            "seconds": time.time() - start, "history": history}

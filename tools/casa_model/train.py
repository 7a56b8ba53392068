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

from .data import Special, augment, build_sequence, collate, gap_keep, normalise
from .model import CasaModel, ModelConfig
from .tokenizer import ByteLevelBPE
from .world import Clip


def batches(clips: List[Clip], frames_u8: np.ndarray, tok: ByteLevelBPE, cfg: ModelConfig, batch_size: int,
            steps: int, seed: int, p_gap: float):
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    sp = Special.of(tok)
    for _ in range(steps):
        idx = [rng.randrange(len(clips)) for _ in range(batch_size)]
        seqs = [build_sequence(clips[i], tok, gap_keep(len(clips[i].frames), rng, p_gap)) for i in idx]
        px = normalise(augment(frames_u8[idx], nrng))
        yield collate(seqs, px, sp, cfg.fusion, cfg.image_tokens)


def loss_of(model: CasaModel, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model.forward_packed(batch)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1), ignore_index=-100)


def train(model: CasaModel, clips: List[Clip], frames_u8: np.ndarray, tok: ByteLevelBPE, *, steps: int,
          batch_size: int, lr: float, seed: int, p_gap: float = 0.3, log_every: int = 50, log=print) -> Dict:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, steps // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    model.train()
    start = time.time()
    history = []
    running = None
    for step, batch in enumerate(batches(clips, frames_u8, tok, model.cfg, batch_size, steps, seed, p_gap)):
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
    return {"steps": steps, "batchSize": batch_size, "lr": lr, "seconds": time.time() - start, "history": history}

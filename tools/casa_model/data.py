"""Turns world clips into training batches (token ids, positions, windows, pixels)."""
from __future__ import annotations

import dataclasses
import random
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .tokenizer import ByteLevelBPE
from .world import SHAPES, Clip

PROMPT = (
    "<|im_start|>system\nYou narrate a live video.<|im_end|>\n"
    "<|im_start|>user\nSay what happens in each frame.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
FRAME_OPENING = ""  # words forced on the first frame only (the reference uses e.g. "This video shows")
PRE_IMAGE = "<|vision_start|>"
POST_IMAGE = "<|vision_end|>"
EOS = "<|im_end|>"
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def caption_text(caption: str) -> str:
    """The text of a caption as it stands in the stream (a leading space, like live commentary)."""
    return " " + caption if caption else ""


@dataclasses.dataclass
class Special:
    eos: int
    pre_image: int
    post_image: int
    pad: int

    @classmethod
    def of(cls, tok: ByteLevelBPE) -> "Special":
        return cls(tok.token_id(EOS), tok.token_id(PRE_IMAGE), tok.token_id(POST_IMAGE), tok.token_id("<|pad|>"))


def normalise(frames_u8: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] → float32 [..., 3, H, W] normalised with MEAN/STD."""
    x = frames_u8.astype(np.float32) / 255.0
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.moveaxis(x, -1, -3).copy()


@dataclasses.dataclass
class Sequence_:
    ids: List[int]
    pos: List[int]
    win: List[int]
    wpos: List[int]
    labels: List[int]
    frames: List[int]  # index in the sequence's pixels of each kept frame (for insertion)
    frame_starts: List[int]  # index in ids of each kept frame's pre-image marker


def build_sequence(clip: Clip, tok: ByteLevelBPE, keep: Optional[Sequence[int]] = None,
                   replaced: Optional[Dict[int, str]] = None) -> Sequence_:
    """`replaced`: frame index → a caption that stands in the history instead of the truth
    (see `misnamed_history`); that window's tokens are inputs only, never targets."""
    sp = Special.of(tok)
    replaced = replaced or {}
    prompt = tok.encode(PROMPT)
    ids = list(prompt)
    win = [0] * len(prompt)
    wpos = list(range(1, len(prompt) + 1))
    labels = [-100] * len(prompt)
    frames, starts = [], []
    keep = range(len(clip.frames)) if keep is None else keep
    first = True
    for local, j in enumerate(keep):
        caption = tok.encode(caption_text(replaced.get(j, clip.frames[j].caption)))
        opening = tok.encode(FRAME_OPENING) if first and FRAME_OPENING else []
        first = False
        forced = [sp.pre_image, sp.post_image] + opening
        text = forced + caption + [sp.eos]
        starts.append(len(ids))
        frames.append(local)
        ids += text
        win += [local + 1] * len(text)
        wpos += list(range(1, len(text) + 1))
        # position i predicts token i+1: supervise from the last forced token to the last caption token
        lab = [-100] * len(text)
        if j not in replaced:
            for i in range(len(forced) - 1, len(text) - 1):
                lab[i] = text[i + 1]
        labels += lab
    return Sequence_(ids, list(range(len(ids))), win, wpos, labels, frames, starts)


def collate(seqs: List[Sequence_], pixels: np.ndarray, sp: Special, fusion: str, image_tokens: int) -> Dict[str, torch.Tensor]:
    """pixels: float32 [B, M, 3, H, W] (all frames of each clip)."""
    b = len(seqs)
    t = max(len(s.ids) for s in seqs)
    out = {
        "ids": torch.full((b, t), sp.pad, dtype=torch.long),
        "pos": torch.zeros((b, t), dtype=torch.long),
        "win": torch.full((b, t), -1, dtype=torch.long),
        "wpos": torch.zeros((b, t), dtype=torch.long),
        "labels": torch.full((b, t), -100, dtype=torch.long),
        "pixels": torch.from_numpy(pixels),
    }
    for i, s in enumerate(seqs):
        n = len(s.ids)
        out["ids"][i, :n] = torch.tensor(s.ids)
        out["pos"][i, :n] = torch.tensor(s.pos)
        out["pos"][i, n:] = torch.arange(n, t)
        out["win"][i, :n] = torch.tensor(s.win)
        out["wpos"][i, :n] = torch.tensor(s.wpos)
        out["labels"][i, :n] = torch.tensor(s.labels)
    if fusion == "insertion":
        m = pixels.shape[1]
        srcs, text_ats = [], []
        for s in seqs:
            src, text_at = [], []
            start_of = dict(zip(s.frame_starts, s.frames))
            for k in range(len(s.ids)):
                text_at.append(len(src))
                src.append(k)
                if k in start_of:  # image goes right after the pre-image marker
                    j = start_of[k]
                    src += [t + j * image_tokens + q for q in range(image_tokens)]
            srcs.append(src)
            text_ats.append(text_at)
        s_len = max(len(x) for x in srcs)
        out["seq_src"] = torch.zeros((b, s_len), dtype=torch.long)
        out["seq_pos"] = torch.zeros((b, s_len), dtype=torch.long)
        out["text_at"] = torch.zeros((b, t), dtype=torch.long)
        for i, (src, text_at) in enumerate(zip(srcs, text_ats)):
            out["seq_src"][i, : len(src)] = torch.tensor(src)
            out["seq_pos"][i] = torch.arange(s_len)
            out["text_at"][i, : len(text_at)] = torch.tensor(text_at)
            out["text_at"][i, len(text_at):] = s_len - 1
        del m
    return out


def augment(frames_u8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-ish noise so the model tolerates video compression and rescaling."""
    x = frames_u8.astype(np.float32)
    gain = rng.uniform(0.95, 1.05, size=(1, 1, 1, 3)).astype(np.float32)
    x = x * gain + rng.normal(0, 3.0, size=x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def training_frames(clip_frames: int, span: int, rng: random.Random, p_window: float, p_gap: float) -> List[int]:
    """Which frames of a pre-rendered clip one training sequence holds (their text and images).

    - the first `span` frames, whole: a stream from its start;
    - with p_gap, the same frames with the first ones cut (the prompt stays), as when the
      runtime evicts the oldest text (DESIGN §3.5);
    - with p_window, a later stretch of the clip (up to `clip_frames`): the world deep into
      a long stream, whose captions still follow the whole history, seen through the
      evicted context the runtime keeps.
    """
    r = rng.random()
    if r < p_window:
        if clip_frames <= span:
            return list(range(span))
        length = rng.randint(12, span)
        end = rng.randint(span + 1, clip_frames)
        return list(range(end - length, end))
    if r < p_window + p_gap and span >= 16:
        return list(range(rng.randint(3, span - 12), span))
    return list(range(span))


def redraw_for_two_objects(clips: Sequence[Clip], clip_frames: int, span: int, rng: random.Random,
                           p_window: float, p_gap: float, p: float, tries: int = 16) -> Optional[Tuple[int, List[int]]]:
    """With probability p, a fresh draw of (clip, frames) whose last frame shows two objects.

    Two objects on screen are where captions go wrong (which one changed, and which shape it
    is), and a long stream spends far longer there than a clip's opening frames do. Drawing
    more sequences that end among two objects trains that case more without changing what the
    captions say. None keeps the draw already made (p not hit, or no such draw in `tries`);
    p = 0 draws no random number, so the batches are exactly those made without it.
    """
    if p <= 0 or rng.random() >= p:
        return None
    for _ in range(tries):
        i = rng.randrange(len(clips))
        frames = training_frames(clip_frames, span, rng, p_window, p_gap)
        if len(clips[i].frames[frames[-1]].objects) == 2:
            return i, frames
    return None


def misnamed_history(clip: Clip, keep: Sequence[int], rng: random.Random, p: float) -> Dict[int, str]:
    """With probability p, one earlier caption of the sequence that names a shape names another
    one instead, as the model's own slip would stand in a live stream's history.

    In a long stream the history is what the model said, not the truth: one shape misread,
    and the captions after it keep the wrong name, each one more evidence for it (the 2,000-frame
    stream showed runs of a dozen frames calling a square "the circle"). With the slip
    as input only and the later captions still the truth, training teaches the model to say
    what the frame shows rather than repeat the history's name. The last frame is never
    replaced, so every replacement has supervised frames after it.
    """
    if p <= 0 or rng.random() >= p:
        return {}
    named = [j for j in keep[:-1] if any(w in SHAPES for w in clip.frames[j].caption.split())]
    if not named:
        return {}
    j = rng.choice(named)
    words = clip.frames[j].caption.split()
    at = rng.choice([i for i, w in enumerate(words) if w in SHAPES])
    words[at] = rng.choice([s for s in SHAPES if s != words[at]])
    return {j: " ".join(words)}

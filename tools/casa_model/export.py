"""Exports a trained model as a casa-live bundle (docs/model-format.md): casa.json, the
tokenizer, ONNX graphs, parity fixtures and a model card."""
from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Dict, List, Optional

import numpy as np
import onnx
import torch
import torch.nn as nn

from .data import FRAME_OPENING, MEAN, POST_IMAGE, PRE_IMAGE, PROMPT, EOS, STD, Special, build_sequence, collate, normalise
from .model import CasaModel, ModelConfig
from .tokenizer import ByteLevelBPE
from .world import FPS, make_clip, render_clip

FORMAT = "casa-live-bundle"
FORMAT_VERSION = 2
OPSET = 17


class _Graph(nn.Module):
    """One of the model's streaming functions (`vision`, `casa_kv`, `decoder_step`,
    `insertion_step`) as the module one graph exports; the model is its submodule, so the
    graph's weights are named `model.*`."""

    def __init__(self, model: CasaModel, function: str):
        super().__init__()
        self.model = model
        self.function = function

    def forward(self, *args):
        return getattr(self.model, self.function)(*args)


def manifest(model: CasaModel, tok: ByteLevelBPE, name: str, extra: Optional[Dict] = None) -> Dict:
    cfg = model.cfg
    sp = Special.of(tok)
    casa = cfg.fusion == "casa"
    return {
        "format": FORMAT,
        "formatVersion": FORMAT_VERSION,
        "name": name,
        "fusion": cfg.fusion,
        "description": "casa-tiny: a small CASA captioning model trained by tools/casa_model on a procedural video world",
        "image": {
            "width": cfg.image_size, "height": cfg.image_size, "fit": "fill",
            "mean": list(MEAN), "std": list(STD), "tokensPerFrame": cfg.image_tokens,
            "patchSize": cfg.patch, "merge": cfg.merge,
        },
        "decoder": {
            "layers": cfg.layers, "hiddenSize": cfg.hidden, "heads": cfg.heads, "kvHeads": cfg.kv_heads,
            "headDim": cfg.head_dim, "vocabSize": cfg.vocab_size,
            "casaLayers": list(cfg.active_casa_layers), "ropeTheta": cfg.rope_theta, "ropeStyle": "rotate_half",
        },
        "tokens": {"eos": sp.eos, "preImage": sp.pre_image, "postImage": sp.post_image, "pad": sp.pad,
                   "penaltyIgnore": [tok.encode(" ")[0], sp.eos]},
        "prompt": {"text": PROMPT, "frameOpening": FRAME_OPENING, "preImage": PRE_IMAGE, "postImage": POST_IMAGE, "eos": EOS},
        "generation": {
            "fps": FPS, "maxNewTokensPerFrame": 24, "temperature": 0.0, "topK": 256,
            "repetitionPenalty": 1.15, "repetitionPenaltyDecay": 0.99, "repetitionCountClamp": 5, "eosBias": 1.0,
        },
        "context": {"maxContextTokens": 256, "evictChunk": 64},
        "files": dict({"tokenizer": "tokenizer.json", "vision": "vision.onnx", "decoder": "decoder.onnx"},
                      **({"casaKv": "casa_kv.onnx"} if casa else {})),
        **(extra or {}),
    }


def _export(module, args, path, input_names, output_names, dynamic_axes, output_shapes):
    # The tracer warns about Python values it records as constants: nn.MultiheadAttention's
    # shape asserts (key and value are one tensor in the vision encoder's self-attention) and
    # its per-head scale, and constant tensors. Each holds for every input of the exported
    # graphs, so the warnings say nothing about this export; the graphs are checked against
    # the fixtures.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, args, path, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True)
    # Shape inference leaves generated names on some output dims; write the specified ones.
    graph_model = onnx.load(path)
    for out in graph_model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for dim, want in zip(dims, output_shapes[out.name]):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want
    graph_model.producer_name = "casa-live tools/casa_model"
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, path)


def _export_vision(model: CasaModel, out_dir: str) -> None:
    cfg = model.cfg
    px = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    _export(_Graph(model, "vision"), (px,), os.path.join(out_dir, "vision.onnx"), ["pixels"], ["image_embeds"],
            {"pixels": {0: "frames"}, "image_embeds": {0: "frames"}},
            {"image_embeds": ["frames", cfg.image_tokens, cfg.hidden]})


def _export_casa_kv(model: CasaModel, out_dir: str) -> None:
    cfg = model.cfg
    C, H, D = len(cfg.active_casa_layers), cfg.kv_heads, cfg.head_dim
    emb = torch.randn(1, cfg.image_tokens, cfg.hidden)
    _export(_Graph(model, "casa_kv"), (emb,), os.path.join(out_dir, "casa_kv.onnx"), ["image_embeds"],
            ["image_keys", "image_values"],
            {"image_embeds": {0: "frames"}, "image_keys": {1: "frames"}, "image_values": {1: "frames"}},
            {"image_keys": [C, "frames", H, cfg.image_tokens, D], "image_values": [C, "frames", H, cfg.image_tokens, D]})


def _dynamic(shapes: Dict[str, list]) -> Dict[str, Dict[int, str]]:
    """dynamic_axes from the specified shapes: every named dimension."""
    return {name: {i: d for i, d in enumerate(shape) if isinstance(d, str)} for name, shape in shapes.items()}


def _export_casa_decoder_v1(model: CasaModel, out_dir: str) -> None:
    """Format version 1: batch 1, the self-attention cache as one [L,1,KVH,P,Dh] tensor."""
    cfg = model.cfg
    L, H, D, C, n = cfg.layers, cfg.kv_heads, cfg.head_dim, len(cfg.active_casa_layers), cfg.image_tokens
    t, p, w = 3, 5, 2
    args = (torch.zeros(1, t, dtype=torch.long), torch.arange(p, p + t)[None], torch.arange(w + 1, w + t + 1)[None],
            torch.randn(L, 1, H, p, D), torch.randn(L, 1, H, p, D), torch.randn(C, 1, H, n, D),
            torch.randn(C, 1, H, n, D), torch.randn(C, 1, H, w, D), torch.randn(C, 1, H, w, D))
    ins = {"input_ids": [1, "tokens"], "position_ids": [1, "tokens"], "window_position_ids": [1, "tokens"],
           "past_keys": [L, 1, H, "past", D], "past_values": [L, 1, H, "past", D],
           "image_keys": [C, 1, H, "image_tokens", D], "image_values": [C, 1, H, "image_tokens", D],
           "window_keys": [C, 1, H, "window", D], "window_values": [C, 1, H, "window", D]}
    outs = {"logits": [1, "tokens", cfg.vocab_size], "new_keys": [L, 1, H, "tokens", D],
            "new_values": [L, 1, H, "tokens", D], "new_window_keys": [C, 1, H, "tokens", D],
            "new_window_values": [C, 1, H, "tokens", D]}
    _export(_Graph(model, "decoder_step"), args, os.path.join(out_dir, "decoder.onnx"), list(ins), list(outs),
            _dynamic({**ins, **outs}), outs)


def _export_casa_decoder_v2(model: CasaModel, out_dir: str) -> None:
    """Format version 2: B ragged rows, per-row cache lengths, one cache tensor per block."""
    cfg = model.cfg
    L, H, D, C, n = cfg.layers, cfg.kv_heads, cfg.head_dim, len(cfg.active_casa_layers), cfg.image_tokens
    b, t, p, w = 3, 2, 5, 2
    ins = {"input_ids": ["batch", "tokens"], "position_ids": ["batch", "tokens"],
           "window_position_ids": ["batch", "tokens"], "past_lengths": ["batch"], "image_lengths": ["batch"],
           "window_lengths": ["batch"]}
    args = [torch.zeros(b, t, dtype=torch.long), torch.arange(p, p + t).repeat(b, 1),
            torch.arange(w + 1, w + t + 1).repeat(b, 1), torch.tensor([p, 2, 0]), torch.tensor([n, n, 0]),
            torch.tensor([w, 1, 0])]
    for name, blocks, size, sample in (("past", L, "past", p), ("image", C, "image_tokens", n), ("window", C, "window", w)):
        for kind in ("keys", "values"):
            for i in range(blocks):
                ins[f"{name}_{kind}_{i}"] = ["batch", H, size, D]
                args.append(torch.randn(b, H, sample, D))
    outs = {"logits": ["batch", "tokens", cfg.vocab_size], "new_keys": [L, "batch", H, "tokens", D],
            "new_values": [L, "batch", H, "tokens", D], "new_window_keys": [C, "batch", H, "tokens", D],
            "new_window_values": [C, "batch", H, "tokens", D]}
    _export(_Graph(model, "decoder_batch_step"), tuple(args), os.path.join(out_dir, "decoder.onnx"), list(ins),
            list(outs), _dynamic({**ins, **outs}), outs)


def _export_insertion_decoder(model: CasaModel, out_dir: str) -> None:
    """The insertion twin's decoder (the same in format versions 1 and 2: batch 1)."""
    cfg = model.cfg
    L, H, D = cfg.layers, cfg.kv_heads, cfg.head_dim
    t, p, n = 2, 5, cfg.image_tokens
    args = (torch.zeros(1, t, dtype=torch.long), torch.randn(1, n, cfg.hidden), torch.arange(p, p + n + t)[None],
            torch.randn(L, 1, H, p, D), torch.randn(L, 1, H, p, D))
    ins = {"input_ids": [1, "tokens"], "image_embeds": [1, "image_tokens", cfg.hidden], "position_ids": [1, "positions"],
           "past_keys": [L, 1, H, "past", D], "past_values": [L, 1, H, "past", D]}
    outs = {"logits": [1, "positions", cfg.vocab_size], "new_keys": [L, 1, H, "positions", D],
            "new_values": [L, 1, H, "positions", D]}
    _export(_Graph(model, "insertion_step"), args, os.path.join(out_dir, "decoder.onnx"), list(ins), list(outs),
            _dynamic({**ins, **outs}), outs)


# The graphs of each (fusion, format version), by file; version 2 changed only the CASA decoder.
GRAPHS = {
    ("casa", 1): {"vision.onnx": _export_vision, "casa_kv.onnx": _export_casa_kv, "decoder.onnx": _export_casa_decoder_v1},
    ("casa", 2): {"vision.onnx": _export_vision, "casa_kv.onnx": _export_casa_kv, "decoder.onnx": _export_casa_decoder_v2},
    ("insertion", 1): {"vision.onnx": _export_vision, "decoder.onnx": _export_insertion_decoder},
    ("insertion", 2): {"vision.onnx": _export_vision, "decoder.onnx": _export_insertion_decoder},
}


def changed_graphs(fusion: str, old: int, new: int = FORMAT_VERSION) -> List[str]:
    """Graph files whose format differs between two versions (what a re-export must write)."""
    a, b = GRAPHS[(fusion, old)], GRAPHS[(fusion, new)]
    return [f for f in b if a.get(f) is not b[f]]


def export_graphs(model: CasaModel, out_dir: str, version: int = FORMAT_VERSION, only: Optional[List[str]] = None) -> None:
    """Writes the model's graphs in format `version` (`only`: just those files)."""
    model.eval()
    for name, write in GRAPHS[(model.cfg.fusion, version)].items():
        if only is None or name in only:
            write(model, out_dir)


def _scripted_stream(model: CasaModel, tok: ByteLevelBPE, fx: str, seed: int, frames: int, prefix: str = ""):
    """One scripted stream of the world (clip `seed`, `frames` frames): its steps (the prompt,
    each frame with its raw rgb24 pixels written to `fx`, then the ground-truth caption tokens
    forced one by one) and the logits the packed (full-sequence) PyTorch model gives for
    every text token, in stream order."""
    cfg = model.cfg
    clip = make_clip(seed, frames)
    rgb = render_clip(clip, cfg.image_size)
    seq = build_sequence(clip, tok)
    batch = collate([seq], normalise(rgb)[None], Special.of(tok), cfg.fusion, cfg.image_tokens)
    with torch.no_grad():
        logits = model.forward_packed(batch)[0].numpy().astype(np.float32)
    steps: List[Dict] = [{"kind": "prompt", "ids": seq.ids[: seq.frame_starts[0]]}]
    for j, start in enumerate(seq.frame_starts):
        end = seq.frame_starts[j + 1] if j + 1 < len(seq.frame_starts) else len(seq.ids)
        name = f"{prefix}frame{j}.rgb"
        rgb[j].tofile(os.path.join(fx, name))
        steps.append({"kind": "frame", "frame": j, "pixels": name, "ids": seq.ids[start:start + 2]})
        for tid in seq.ids[start + 2:end]:
            steps.append({"kind": "token", "ids": [tid]})
    return steps, logits, clip


def write_fixtures(model: CasaModel, tok: ByteLevelBPE, out_dir: str, seed: int = 424242, frames: int = 4) -> Dict:
    """fixtures/session.json and logits.f32: one scripted session (see _scripted_stream)."""
    cfg = model.cfg
    fx = os.path.join(out_dir, "fixtures")
    os.makedirs(fx, exist_ok=True)
    steps, logits, clip = _scripted_stream(model, tok, fx, seed, frames)
    logits.tofile(os.path.join(fx, "logits.f32"))
    script = {
        "description": "Scripted session; logits.f32 holds float32 [textTokens, vocab] rows from the packed "
                       "PyTorch reference, one row per text token in stream order (the steps' ids concatenated).",
        "seed": seed, "width": cfg.image_size, "height": cfg.image_size, "vocabSize": cfg.vocab_size,
        "textTokens": len(logits), "tolerance": 1e-4, "steps": steps,
        "captions": clip.captions,
        "tokenization": [{"text": t, "ids": tok.encode(t)} for t in
                         [PROMPT] + [" " + c for c in clip.captions if c] + [" another big yellow triangle enters from the bottom"]],
    }
    with open(os.path.join(fx, "session.json"), "w") as f:
        json.dump(script, f, indent=1)
    return script


# The batch fixtures' streams: (clip seed, frames); with session.json's stream, four streams of
# different lengths that a runtime replays side by side.
BATCH_STREAMS = ((424243, 2), (424244, 1), (424245, 3))


def write_batch_fixtures(model: CasaModel, tok: ByteLevelBPE, out_dir: str) -> Dict:
    """fixtures/batch.json and batch-logits.f32: scripted streams of different lengths for
    batched runtimes, each with its packed-reference logits (rows at `logitsOffset`)."""
    cfg = model.cfg
    fx = os.path.join(out_dir, "fixtures")
    os.makedirs(fx, exist_ok=True)
    streams, rows = [], []
    offset = 0
    for k, (seed, frames) in enumerate(BATCH_STREAMS):
        steps, logits, _ = _scripted_stream(model, tok, fx, seed, frames, prefix=f"b{k}-")
        streams.append({"seed": seed, "logitsOffset": offset, "textTokens": len(logits), "steps": steps})
        rows.append(logits)
        offset += len(logits)
    np.concatenate(rows).tofile(os.path.join(fx, "batch-logits.f32"))
    script = {
        "description": "Scripted streams of different lengths, replayed side by side (batched); batch-logits.f32 "
                       "holds each stream's float32 [textTokens, vocab] rows from the packed PyTorch reference, "
                       "stream k's from row logitsOffset. session.json's stream is a further one.",
        "width": cfg.image_size, "height": cfg.image_size, "vocabSize": cfg.vocab_size, "tolerance": 1e-4,
        "textTokens": offset, "streams": streams,
    }
    with open(os.path.join(fx, "batch.json"), "w") as f:
        json.dump(script, f, indent=1)
    return script


def export_bundle(model: CasaModel, tok: ByteLevelBPE, out_dir: str, name: str, extra: Optional[Dict] = None) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for stale in ("vision.onnx", "casa_kv.onnx", "decoder.onnx"):
        if os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    export_graphs(model, out_dir)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    write_fixtures(model, tok, out_dir)
    if model.cfg.fusion == "casa":
        write_batch_fixtures(model, tok, out_dir)
    with open(os.path.join(out_dir, "casa.json"), "w") as f:
        json.dump(manifest(model, tok, name, extra), f, indent=2)


def _legs_text(legs) -> str:
    """The training runs that made the weights, when there was more than one."""
    if len(legs) < 2:
        return ""
    rows = []
    for i, leg in enumerate(legs):
        mix = (f"sequences of ≤ {leg['span']} frames from {leg['clipFrames']}-frame clips, "
               f"{leg['pWindow']:.0%} later stretches, {leg['pGap']:.0%} with the first frames' text cut"
               if "span" in leg else "24-frame clips from their start, 30 % with the first frames' text cut")
        if leg.get("pMisnamed"):
            mix += f"; in {leg['pMisnamed']:.0%} of them one earlier caption names the wrong shape (input only)"
        if leg.get("pTwoObjects"):
            mix += f"; {leg['pTwoObjects']:.0%} of them redrawn to end on a frame with two objects"
        how = "from random weights" if i == 0 else "continued from the previous leg's weights, optimiser and schedule restarted"
        rows.append(f"{i + 1}. {leg['steps']} steps, lr {leg['lr']:g}, {how}; {mix} ({leg['seconds'] / 60:.0f} min).")
    return "\n\nThe weights come from consecutive legs:\n\n" + "\n".join(rows)


def write_model_card(out_dir: str, man: Dict, ev: Dict) -> None:
    """README.md of a bundle: what it is, how it was made, its measured figures, licence."""
    tr = man.get("training", {})
    cmp_rows = "\n".join(
        f"| {name} | {e['frameExactMatch']:.3f} | {e['tokenF1']:.3f} | {e['params']:,} |"
        for name, e in sorted(ev.get("compare", {}).items()))
    text = f"""# {man['name']}

A small {man['fusion'].upper() if man['fusion'] == 'casa' else 'token-insertion'} live-captioning model, made entirely by
`tools/casa_model` (`npm run model:build`) — no downloaded weights or data.

- **Fusion:** `{man['fusion']}`{' — CASA sublayers in blocks ' + str(man['decoder']['casaLayers']) if man['fusion'] == 'casa' else ' — image tokens written into the text stream (the twin used by the benchmarks)'}
- **Decoder:** Qwen2-style, {man['decoder']['layers']} blocks, width {man['decoder']['hiddenSize']}, {man['decoder']['heads']} query / {man['decoder']['kvHeads']} KV heads of {man['decoder']['headDim']}, RMSNorm, SwiGLU, rotary positions (θ = {man['decoder']['ropeTheta']:g}).
- **Vision:** {man['image']['width']}×{man['image']['height']} RGB, {man['image']['patchSize']}-pixel patches with 2-D positions, a small transformer, 2×2 patch merging → {man['image']['tokensPerFrame']} image tokens per frame.
- **Tokenizer:** byte-level BPE, {man['decoder']['vocabSize']} tokens, trained on the world's commentary.
- **Parameters:** {ev.get('params', 0):,}.

## Data

A procedural video world (`tools/casa_model/world.py`): circles, squares and triangles in five
colours and two sizes enter, move, turn, stop, change colour, grow, shrink, meet and leave,
on varied backgrounds, sampled at 2 fps. The ground truth is live commentary ("a big red circle
enters from the left", "it moves up again", "the square meets the circle"); about a third of
the frames are silent. Every caption is decidable from the current frame and the text said so
far. Train, validation and test clips come from disjoint seed ranges.

## Training

AdamW, cosine schedule, {tr.get('steps', '?')} steps of {tr.get('batchSize', '?')} sequences, on this repository's
2-core CPU machine ({tr.get('seconds', 0) / 60:.0f} min). The CASA model and its insertion twin use the same data
and seed and train side by side; a CASA step costs less, so in the time the twin's training
takes, the CASA model also trains a second leg at a lower rate, then a third alone on the
cores.{_legs_text(tr.get('legs', []))}

## Evaluation (held-out test split, greedy streaming decoding)

{ev.get('clips', '?')} clips, {ev.get('frames', '?')} frames; exact match counts every frame, silent ones included; token F1 is
the word-multiset F1 micro-averaged over frames.

| model | frame exact match | token F1 | parameters |
|---|---|---|---|
{cmp_rows}

(`crossattn` is the plain cross-attention ablation: CASA layers with the window text removed,
if it was trained.) Figures: `eval.json`.

## Format and licence

Bundle format version {man['formatVersion']} (docs/model-format.md). Weights, data and code: Apache-2.0, as the
rest of casa-live.
"""
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)

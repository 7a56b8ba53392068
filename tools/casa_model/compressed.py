"""Token-compressed insertion bundles for benchmark B1 (`python3 -m tools.casa_model
compressed --tokens K --out DIR [--bundle models/casa-tiny-insertion] [--seed 0]`).

A Q-Former-style connector after the insertion twin's vision encoder: K learned queries
cross-attend to the frame's N image tokens (one attention block and an MLP, pre-norm,
residual) and are what the decoder gets instead of the N tokens. Its weights are random,
not trained: B1 forces the number of tokens per frame and measures only time and memory,
so the captions of such a bundle mean nothing.

The bundle is the twin with a longer vision graph:
- vision.onnx: the twin's vision graph, its output renamed `vision_tokens` [frames, N, D],
  followed by the connector's nodes, ending in `image_embeds` [frames, K, D];
- decoder.onnx and tokenizer.json: the twin's, unchanged (its decoder takes any number of
  image tokens per step);
- casa.json: the twin's, with `image.tokensPerFrame` = K, a new name and description, and
  `training.connector` saying what was added; no parity fixtures (nothing to compare with).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Dict

import onnx
import onnx.compose
import onnx.helper
import torch
import torch.nn as nn

from .export import OPSET

VISION_TOKENS = "vision_tokens"


class QFormerConnector(nn.Module):
    """K learned queries → one cross-attention block over the image tokens → K tokens."""

    def __init__(self, hidden: int, tokens: int, heads: int = 4, ffn: int = 0, seed: int = 0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of {heads} heads")
        g = torch.Generator().manual_seed(seed)
        self.tokens, self.heads, self.head_dim = tokens, heads, hidden // heads
        self.queries = nn.Parameter(torch.randn(tokens, hidden, generator=g) * 0.02)
        self.norm_q, self.norm_kv, self.norm_mlp, self.norm_out = (nn.LayerNorm(hidden) for _ in range(4))
        self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))
        width = ffn or 4 * hidden
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, hidden))
        # Every random value from the seed: projections ~ N(0, 1/fan_in), biases 0, norms 1.
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name != "queries" and p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
                elif name.endswith("bias"):
                    p.zero_()

    def _split(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """[F, n, D] → [F, heads, n, head_dim] (sizes from the config: the frames axis stays dynamic)."""
        return x.reshape(-1, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        n = image_tokens.shape[1]
        q = self.queries.unsqueeze(0).expand(image_tokens.shape[0], -1, -1)
        kv = self.norm_kv(image_tokens)
        qh = self._split(self.q(self.norm_q(q)), self.tokens)
        kh, vh = self._split(self.k(kv), n), self._split(self.v(kv), n)
        att = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1) @ vh
        h = q + self.o(att.transpose(1, 2).reshape(-1, self.tokens, self.heads * self.head_dim))
        h = h + self.mlp(self.norm_mlp(h))
        return self.norm_out(h)


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    """Renames a tensor of the graph (its producer, consumers, and the graph's inputs and outputs)."""
    for node in model.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for v in [*model.graph.input, *model.graph.output]:
        if v.name == old:
            v.name = new


def _export_connector(conn: QFormerConnector, n: int, hidden: int, path: str) -> onnx.ModelProto:
    torch.onnx.export(conn.eval(), (torch.randn(2, n, hidden),), path, input_names=[VISION_TOKENS],
                      output_names=["image_embeds"], opset_version=OPSET, do_constant_folding=True,
                      dynamic_axes={VISION_TOKENS: {0: "frames"}, "image_embeds": {0: "frames"}})
    # Every name gets a prefix (no clash with the vision graph's), then the two ends get theirs back.
    m = onnx.compose.add_prefix(onnx.load(path), "connector/")
    for name in (VISION_TOKENS, "image_embeds"):
        _rename(m, f"connector/{name}", name)
    return m


def compressed_vision(vision: onnx.ModelProto, conn: QFormerConnector, n: int, hidden: int) -> onnx.ModelProto:
    """The twin's vision graph followed by the connector, as one graph: pixels → image_embeds [frames, K, D]."""
    _rename(vision, "image_embeds", VISION_TOKENS)
    with tempfile.TemporaryDirectory() as tmp:
        connector = _export_connector(conn, n, hidden, os.path.join(tmp, "connector.onnx"))
    connector.ir_version = vision.ir_version
    merged = onnx.compose.merge_models(vision, connector, io_map=[(VISION_TOKENS, VISION_TOKENS)],
                                       producer_name="casa-live tools/casa_model compressed")
    # merge_models lists the default domain once per input model: keep one entry per domain.
    opsets = {(o.domain, o.version) for o in merged.opset_import}
    del merged.opset_import[:]
    merged.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in sorted(opsets))
    out = merged.graph.output[0]
    for dim, want in zip(out.type.tensor_type.shape.dim, ["frames", conn.tokens, hidden]):
        if isinstance(want, str):
            dim.dim_param = want
        else:
            dim.dim_value = want
    onnx.checker.check_model(merged)
    return merged


def build_compressed(bundle: str, out: str, tokens: int, seed: int = 0) -> Dict:
    """Writes the token-compressed twin of insertion `bundle` with `tokens` image tokens per frame to `out`."""
    with open(os.path.join(bundle, "casa.json")) as f:
        man = json.load(f)
    if man["fusion"] != "insertion":
        raise SystemExit(f"{bundle}: fusion {man['fusion']!r}; the connector goes in front of an insertion decoder")
    n, hidden = man["image"]["tokensPerFrame"], man["decoder"]["hiddenSize"]
    if not 1 <= tokens:
        raise SystemExit(f"--tokens {tokens}: at least 1")
    conn = QFormerConnector(hidden, tokens, seed=seed)
    vision = compressed_vision(onnx.load(os.path.join(bundle, man["files"]["vision"])), conn, n, hidden)
    os.makedirs(out, exist_ok=True)
    onnx.save(vision, os.path.join(out, man["files"]["vision"]))
    for key in ("decoder", "tokenizer"):
        shutil.copyfile(os.path.join(bundle, man["files"][key]), os.path.join(out, man["files"][key]))
    params = sum(p.numel() for p in conn.parameters())
    man["name"] = f"{man['name']}-q{tokens}"
    man["description"] = (f"{man['name']}: the insertion twin with a Q-Former-style connector ({tokens} learned queries "
                          f"over its {n} image tokens, random weights) for benchmark B1; its captions mean nothing")
    man["image"]["tokensPerFrame"] = tokens
    man["training"] = dict(man.get("training") or {}, connector={
        "kind": "q-former", "queries": tokens, "sourceTokens": n, "heads": conn.heads, "parameters": params,
        "trained": False, "seed": seed, "from": os.path.basename(os.path.normpath(bundle))})
    with open(os.path.join(out, "casa.json"), "w") as f:
        json.dump(man, f, indent=2)
    return {"bundle": out, "tokens": tokens, "sourceTokens": n, "connectorParameters": params}

"""Export round trip: the ONNX graphs carry the names, dtypes and shapes docs/model-format.md
specifies, and the manifest and fixtures agree with them."""
import json
import os

import numpy as np
import onnx
import pytest
import torch

from tools.casa_model.export import FORMAT_VERSION, export_bundle
from tools.casa_model.model import CasaModel, ModelConfig


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _io(path):
    g = onnx.load(path).graph
    inits = {i.name for i in g.initializer}
    ins = {v.name: (_dims(v), v.type.tensor_type.elem_type) for v in g.input if v.name not in inits}
    outs = {v.name: (_dims(v), v.type.tensor_type.elem_type) for v in g.output}
    return ins, outs


F32, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64


@pytest.mark.parametrize("fusion", ["casa", "insertion"])
def test_export_round_trip(fusion, tok, tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(fusion=fusion, vocab_size=tok.size, casa_layers=(1, 3))
    model = CasaModel(cfg).eval()
    out = tmp_path / fusion
    export_bundle(model, tok, str(out), f"test-{fusion}")
    man = json.loads((out / "casa.json").read_text())
    assert man["formatVersion"] == FORMAT_VERSION and man["fusion"] == fusion
    n, L, H, D, C = cfg.image_tokens, cfg.layers, cfg.kv_heads, cfg.head_dim, 2
    ins, outs = _io(str(out / "vision.onnx"))
    assert ins == {"pixels": (["frames", 3, 64, 64], F32)}
    assert outs == {"image_embeds": (["frames", n, cfg.hidden], F32)}
    ins, outs = _io(str(out / "decoder.onnx"))
    if fusion == "casa":
        assert man["decoder"]["casaLayers"] == [1, 3]
        kins, kouts = _io(str(out / "casa_kv.onnx"))
        assert kins == {"image_embeds": (["frames", n, cfg.hidden], F32)}
        assert kouts["image_keys"] == ([C, "frames", H, n, D], F32)
        assert ins["input_ids"] == ([1, "tokens"], I64)
        assert ins["window_position_ids"] == ([1, "tokens"], I64)
        assert ins["past_keys"] == ([L, 1, H, "past", D], F32)
        assert ins["image_keys"] == ([C, 1, H, "image_tokens", D], F32)
        assert ins["window_values"] == ([C, 1, H, "window", D], F32)
        assert outs["logits"] == ([1, "tokens", cfg.vocab_size], F32)
        assert outs["new_window_keys"] == ([C, 1, H, "tokens", D], F32)
    else:
        assert not (out / "casa_kv.onnx").exists()
        assert man["decoder"]["casaLayers"] == []
        assert ins["image_embeds"] == ([1, "image_tokens", cfg.hidden], F32)
        assert ins["position_ids"] == ([1, "positions"], I64)
        assert outs["new_keys"] == ([L, 1, H, "positions", D], F32)
    fx = json.loads((out / "fixtures" / "session.json").read_text())
    assert sum(len(s["ids"]) for s in fx["steps"]) == fx["textTokens"]
    logits = np.fromfile(out / "fixtures" / "logits.f32", dtype=np.float32)
    assert logits.size == fx["textTokens"] * cfg.vocab_size
    frames = [s for s in fx["steps"] if s["kind"] == "frame"]
    assert len(frames) >= 3
    assert os.path.getsize(out / "fixtures" / frames[0]["pixels"]) == 64 * 64 * 3

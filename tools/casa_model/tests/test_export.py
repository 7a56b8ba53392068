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
        assert ins["input_ids"] == (["batch", "tokens"], I64)
        assert ins["window_position_ids"] == (["batch", "tokens"], I64)
        for name in ("past_lengths", "image_lengths", "window_lengths"):
            assert ins[name] == (["batch"], I64)
        for l in range(L):
            assert ins[f"past_keys_{l}"] == (["batch", H, "past", D], F32)
            assert ins[f"past_values_{l}"] == (["batch", H, "past", D], F32)
        for c in range(C):
            assert ins[f"image_keys_{c}"] == (["batch", H, "image_tokens", D], F32)
            assert ins[f"window_values_{c}"] == (["batch", H, "window", D], F32)
        assert len(ins) == 6 + 2 * L + 4 * C
        assert outs["logits"] == (["batch", "tokens", cfg.vocab_size], F32)
        assert outs["new_keys"] == ([L, "batch", H, "tokens", D], F32)
        assert outs["new_window_keys"] == ([C, "batch", H, "tokens", D], F32)
        bx = json.loads((out / "fixtures" / "batch.json").read_text())
        assert len({s["textTokens"] for s in bx["streams"]}) == len(bx["streams"]) >= 3
        assert sum(s["textTokens"] for s in bx["streams"]) == bx["textTokens"]
        rows = np.fromfile(out / "fixtures" / "batch-logits.f32", dtype=np.float32)
        assert rows.size == bx["textTokens"] * cfg.vocab_size
    else:
        assert not (out / "casa_kv.onnx").exists()
        assert man["decoder"]["casaLayers"] == []
        assert ins["image_embeds"] == ([1, "image_tokens", cfg.hidden], F32)
        assert ins["position_ids"] == ([1, "positions"], I64)
        assert outs["new_keys"] == ([L, 1, H, "positions", D], F32)
        assert not (out / "fixtures" / "batch.json").exists()
    fx = json.loads((out / "fixtures" / "session.json").read_text())
    assert sum(len(s["ids"]) for s in fx["steps"]) == fx["textTokens"]
    logits = np.fromfile(out / "fixtures" / "logits.f32", dtype=np.float32)
    assert logits.size == fx["textTokens"] * cfg.vocab_size
    frames = [s for s in fx["steps"] if s["kind"] == "frame"]
    assert len(frames) >= 3
    assert os.path.getsize(out / "fixtures" / frames[0]["pixels"]) == 64 * 64 * 3


def test_reexport_rewrites_a_version_1_bundle_from_its_own_weights(tok, tmp_path):
    """`reexport` turns a version-1 CASA bundle into version 2 without its PyTorch weights:
    only decoder.onnx changes among the graphs, the fixtures stay, batch fixtures are added,
    and the rebuilt model's batched step reproduces the fixtures' reference logits."""
    from tools.casa_model.export import export_graphs
    from tools.casa_model.rebuild import rebuild, reexport

    torch.manual_seed(1)
    model = CasaModel(ModelConfig(fusion="casa", vocab_size=tok.size, casa_layers=(0, 2))).eval()
    with torch.no_grad():  # distinct values, as trained weights have (the exporter shares equal initialisers)
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    out = tmp_path / "old"
    export_bundle(model, tok, str(out), "old")
    export_graphs(model, str(out), 1, only=["decoder.onnx"])  # as an older exporter wrote it
    man = json.loads((out / "casa.json").read_text())
    man["formatVersion"] = 1
    (out / "casa.json").write_text(json.dumps(man))
    (out / "fixtures" / "batch.json").unlink()
    vision = (out / "vision.onnx").read_bytes()
    logits = (out / "fixtures" / "logits.f32").read_bytes()
    r = reexport(str(out))
    assert (r["fromVersion"], r["toVersion"], r["graphs"]) == (1, 2, ["decoder.onnx"])
    assert r["fixtureMaxAbsDiff"] <= 1e-5
    assert json.loads((out / "casa.json").read_text())["formatVersion"] == 2
    assert (out / "vision.onnx").read_bytes() == vision
    assert (out / "fixtures" / "logits.f32").read_bytes() == logits
    assert (out / "fixtures" / "batch.json").exists()
    ins, _ = _io(str(out / "decoder.onnx"))
    assert "past_lengths" in ins and "past_keys" not in ins
    rebuilt, _ = rebuild(str(out))  # a version-2 bundle rebuilds too
    for (name, a), b in zip(model.state_dict().items(), rebuilt.state_dict().values()):
        if not name.startswith("vision."):  # the position table is rebuilt as another equal split
            assert torch.equal(a, b), name

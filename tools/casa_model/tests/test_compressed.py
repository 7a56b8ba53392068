"""The token-compressed insertion bundles of benchmark B1 (tools/casa_model/compressed.py),
built from the dev insertion bundle of the runtime's test fixtures."""
import json
import os

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from tools.casa_model.compressed import QFormerConnector, build_compressed

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DEV_INSERTION = os.path.join(ROOT, "test", "fixtures", "bundles", "dev-insertion")


def _read(path):
    with open(path) as f:
        return json.load(f)


def _initialisers(path):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}


def test_connector_gives_k_tokens_from_the_image_tokens():
    conn = QFormerConnector(hidden=32, tokens=3, heads=4, seed=1).eval()
    x = torch.randn(2, 16, 32)
    with torch.no_grad():
        y = conn(x)
        assert y.shape == (2, 3, 32)
        # each frame's tokens depend on that frame's image tokens only
        z = conn(torch.stack([x[0], torch.randn(16, 32)]))
    assert torch.allclose(y[0], z[0], atol=1e-6)
    assert not torch.allclose(y[1], z[1], atol=1e-3)
    # the same seed, the same random connector
    again = QFormerConnector(hidden=32, tokens=3, heads=4, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(conn.state_dict().values(), again.state_dict().values()))
    other = QFormerConnector(hidden=32, tokens=3, heads=4, seed=2)
    assert not torch.equal(conn.queries, other.queries)


@pytest.mark.parametrize("tokens", [1, 4, 8])
def test_bundle_is_the_twin_with_k_image_tokens(tmp_path, tokens):
    out = str(tmp_path / f"q{tokens}")
    r = build_compressed(DEV_INSERTION, out, tokens, seed=0)
    src, man = _read(os.path.join(DEV_INSERTION, "casa.json")), _read(os.path.join(out, "casa.json"))
    assert r["tokens"] == tokens and r["sourceTokens"] == src["image"]["tokensPerFrame"] == 16
    assert man["image"]["tokensPerFrame"] == tokens
    assert man["name"] == f"{src['name']}-q{tokens}" and man["fusion"] == "insertion"
    assert man["training"]["connector"]["trained"] is False
    assert {k: v for k, v in man.items() if k not in ("name", "description", "image", "training")} == \
        {k: v for k, v in src.items() if k not in ("name", "description", "image", "training")}
    # the decoder and tokenizer are the twin's, byte for byte
    for f in ("decoder.onnx", "tokenizer.json"):
        with open(os.path.join(DEV_INSERTION, f), "rb") as a, open(os.path.join(out, f), "rb") as b:
            assert a.read() == b.read()
    # vision.onnx: pixels → image_embeds [frames, K, D], well formed, one opset entry per domain
    m = onnx.load(os.path.join(out, "vision.onnx"))
    onnx.checker.check_model(m, full_check=True)
    assert [i.name for i in m.graph.input] == ["pixels"]
    (o,) = m.graph.output
    assert o.name == "image_embeds"
    assert [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] == ["frames", tokens, src["decoder"]["hiddenSize"]]
    assert len({x.domain for x in m.opset_import}) == len(m.opset_import)
    # the twin's vision weights are all there, unchanged
    twin, ours = _initialisers(os.path.join(DEV_INSERTION, "vision.onnx")), _initialisers(os.path.join(out, "vision.onnx"))
    for name, value in twin.items():
        assert np.array_equal(ours[name], value), name
    assert any(n.startswith("connector/") for n in ours)

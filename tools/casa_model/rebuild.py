"""Rebuilds a PyTorch CasaModel from a bundle's own ONNX weights, and re-exports a bundle in
the current format version from them (`python3 -m tools.casa_model reexport --bundle DIR`).

The PyTorch weights (tools/casa_model/.work/*.pt) are build artefacts that are not committed,
so the model is rebuilt from the bundle itself: a freshly initialised CasaModel of the
bundle's shape is exported with this exporter, in the bundle's format version, to learn
where each parameter lands among the ONNX initialisers (by name, transposed as a MatMul
operand, or — the vision encoder's row + column position table — constant-folded into one
sum), and the bundle's initialisers are loaded back through that map. The rebuilt model is
checked against the bundle's parity fixtures (the packed full-sequence PyTorch logits
recorded at export time) before anything uses it. Used by the reexport stage, by the model
worker's `torch` adapter (tools/casa_worker) and by bench/torch_reference.py (B2).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Dict, Tuple

import numpy as np
import torch

from .data import normalise
from .export import FORMAT_VERSION, changed_graphs, export_graphs, write_batch_fixtures
from .model import CasaModel, ModelConfig
from .stream import Session
from .tokenizer import ByteLevelBPE


class BundleError(ValueError):
    """The bundle cannot be rebuilt (one sentence naming the file)."""


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _onnx_initialisers(path: str, keyed: bool = False) -> Dict[str, np.ndarray]:
    """Initialisers by name; with `keyed`, exporter-generated names ("onnx::MatMul_419", which
    depend on a global counter) are replaced by their first consumer's place in the graph
    ("MatMul[12]#1": input 1 of the graph's 13th MatMul), which depends only on the model's
    structure — not on node names, which follow the Python module calls that traced it."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    consumer: Dict[str, str] = {}
    seen: Dict[str, int] = {}
    for node in m.graph.node:
        ordinal = seen.get(node.op_type, 0)
        seen[node.op_type] = ordinal + 1
        for k, inp in enumerate(node.input):
            consumer.setdefault(inp, f"{node.op_type}[{ordinal}]#{k}")
    out = {}
    for i in m.graph.initializer:
        name = i.name
        if keyed and not name.startswith("model."):
            name = consumer.get(name, name)
        out[name] = numpy_helper.to_array(i)
    return out


def config_from_bundle(bundle: str) -> ModelConfig:
    man = read_json(os.path.join(bundle, "casa.json"))
    d, im = man["decoder"], man["image"]
    vis = _onnx_initialisers(os.path.join(bundle, man["files"]["vision"]))
    dec = _onnx_initialisers(os.path.join(bundle, man["files"]["decoder"]))
    vision_hidden = int(vis["model.vision.patch.weight"].shape[0])
    vision_layers = len({k.split(".")[3] for k in vis if k.startswith("model.vision.blocks.")})
    # The MLP width: the gate/up projections are [hidden, ffn] MatMul operands.
    ffn = max(int(a.shape[1]) for a in dec.values() if a.ndim == 2 and a.shape[0] == d["hiddenSize"]
              and a.shape[1] not in (d["vocabSize"], d["hiddenSize"], d["kvHeads"] * d["headDim"], d["heads"] * d["headDim"]))
    return ModelConfig(
        fusion=man["fusion"], vocab_size=d["vocabSize"], hidden=d["hiddenSize"], layers=d["layers"], heads=d["heads"],
        kv_heads=d["kvHeads"], head_dim=d["headDim"], ffn=ffn,
        casa_layers=tuple(d["casaLayers"]) if man["fusion"] == "casa" else ModelConfig.casa_layers,
        rope_theta=float(d["ropeTheta"]), image_size=im["width"], patch=im.get("patchSize", 8),
        vision_hidden=vision_hidden, vision_layers=vision_layers, merge=im.get("merge", 2))


def rebuild(bundle: str) -> Tuple[CasaModel, Dict]:
    """A CasaModel with the bundle's weights (see the module docstring)."""
    man = read_json(os.path.join(bundle, "casa.json"))
    cfg = config_from_bundle(bundle)
    torch.manual_seed(12345)
    probe = CasaModel(cfg).eval()
    with torch.no_grad():
        # Distinct values everywhere: the exporter shares identical initialisers (zero biases,
        # unit norms of a fresh model), which would hide where each parameter goes.
        for prm in probe.parameters():
            prm.copy_(torch.randn_like(prm) * 0.05)
    params = dict(probe.named_parameters())
    files = [man["files"]["vision"], man["files"]["decoder"]] + ([man["files"]["casaKv"]] if cfg.fusion == "casa" else [])
    with tempfile.TemporaryDirectory() as tmp:
        export_graphs(probe, tmp, man["formatVersion"])
        probe_inits = {f: _onnx_initialisers(os.path.join(tmp, f), keyed=True) for f in files}
    state = {k: v.detach().clone() for k, v in probe.state_dict().items()}
    loaded = set()
    folded = 0
    for f in files:
        ours = probe_inits[f]
        theirs = _onnx_initialisers(os.path.join(bundle, f), keyed=True)
        if set(ours) != set(theirs):
            raise BundleError(f"{bundle}/{f}: the graph's initialisers do not match a fresh export of the same shape "
                             f"({sorted(set(ours) ^ set(theirs))[:4]} ...); was it exported by another exporter version?")
        for name, probe_val in ours.items():
            val = theirs[name]
            if val.shape != probe_val.shape:
                raise BundleError(f"{bundle}/{f}: initialiser {name} has shape {val.shape}, expected {probe_val.shape}")
            stripped = name[len("model."):] if name.startswith("model.") else name
            if stripped in params:
                state[stripped] = torch.from_numpy(val.copy())
                loaded.add(stripped)
                continue
            match = None
            for pname, p in params.items():
                pv = p.detach().numpy()
                if pv.shape == probe_val.shape and np.array_equal(pv, probe_val):
                    match = (pname, False)
                elif pv.ndim == 2 and pv.T.shape == probe_val.shape and np.array_equal(pv.T, probe_val):
                    match = (pname, True)
                if match:
                    break
            if match:
                pname, transposed = match
                state[pname] = torch.from_numpy((val.T if transposed else val).copy())
                loaded.add(pname)
                continue
            # The vision encoder's position table row[i] + col[j], constant-folded into [g*g, Dv].
            g = probe.vision.grid
            pos = (probe.vision.row[:, None, :] + probe.vision.col[None, :, :]).reshape(g * g, -1).detach().numpy()
            if probe_val.shape == pos.shape and np.allclose(probe_val, pos, atol=1e-7):
                table = val.reshape(g, g, -1)
                # Any split with row[i] + col[j] = table[i, j] is the same model.
                state["vision.row"] = torch.from_numpy(table[:, 0, :].copy())
                state["vision.col"] = torch.from_numpy((table[0, :, :] - table[0, 0, :]).copy())
                loaded.update({"vision.row", "vision.col"})
                folded += 1
                continue
            raise BundleError(f"{bundle}/{f}: cannot place initialiser {name} {tuple(val.shape)} in the model")
    missing = sorted(set(params) - loaded)
    if missing:
        raise BundleError(f"{bundle}: parameters not found in the ONNX graphs: {', '.join(missing)}")
    model = CasaModel(cfg)
    model.load_state_dict(state)
    return model.eval(), {"parameters": len(params), "foldedTables": folded}


@torch.no_grad()
def check_fixtures(model: CasaModel, tok: ByteLevelBPE, bundle: str) -> float:
    """Max |Δlogit| of the rebuilt model's streaming path against the bundle's fixtures."""
    fx = os.path.join(bundle, "fixtures")
    script = read_json(os.path.join(fx, "session.json"))
    ref = np.fromfile(os.path.join(fx, "logits.f32"), dtype=np.float32).reshape(script["textTokens"], script["vocabSize"])
    cfg = model.cfg
    s = Session(model, tok)
    row = 0
    worst = 0.0
    for step in script["steps"]:
        ids = step["ids"]
        if step["kind"] == "frame":
            rgb = np.fromfile(os.path.join(fx, step["pixels"]), dtype=np.uint8).reshape(script["height"], script["width"], 3)
            embeds = model.vision(torch.from_numpy(normalise(rgb[None])))
            if cfg.fusion == "casa":
                s.img_k, s.img_v = model.casa_kv(embeds)
                c = s.img_k.shape[0]
                s.win_k = torch.zeros(c, 1, cfg.kv_heads, 0, cfg.head_dim)
                s.win_v = torch.zeros_like(s.win_k)
                s.wpos = 0
                logits = s.feed(ids)
            else:
                first = s.feed(ids[:1])
                n = embeds.shape[1]
                rest = ids[1:]
                pos = torch.arange(s.pos, s.pos + n + len(rest))[None]
                out, nk, nv = model.insertion_step(torch.tensor([rest]), embeds, pos, s.past_k, s.past_v)
                s.past_k = torch.cat([s.past_k, nk], 3)
                s.past_v = torch.cat([s.past_v, nv], 3)
                s.pos += n + len(rest)
                logits = torch.cat([first, out[0, n:]], 0)
        else:
            logits = s.feed(ids)
        got = logits.numpy()
        worst = max(worst, float(np.abs(got - ref[row:row + len(ids)]).max()))
        row += len(ids)
    return worst


def reexport(bundle: str) -> Dict:
    """Re-exports `bundle` in place in the current format version from its own weights: the
    graphs whose format changed since the bundle's version, batch fixtures (casa), and
    casa.json's formatVersion. Everything else (fixtures, tokenizer, eval.json, the other
    graphs) stays as it is. Refuses a bundle whose rebuilt model misses its fixtures."""
    man = read_json(os.path.join(bundle, "casa.json"))
    old = man["formatVersion"]
    model, info = rebuild(bundle)
    tok = ByteLevelBPE.load(os.path.join(bundle, man["files"]["tokenizer"]))
    tolerance = read_json(os.path.join(bundle, "fixtures", "session.json")).get("tolerance", 1e-4)
    err = check_fixtures(model, tok, bundle)
    if not err <= tolerance:
        raise BundleError(f"{bundle}: the rebuilt PyTorch model misses the parity fixtures (max |dlogit| {err:.3g} > {tolerance})")
    files = changed_graphs(man["fusion"], old)
    with tempfile.TemporaryDirectory() as tmp:
        export_graphs(model, tmp, FORMAT_VERSION, only=files)
        for f in files:
            shutil.move(os.path.join(tmp, f), os.path.join(bundle, f))
    if man["fusion"] == "casa":
        write_batch_fixtures(model, tok, bundle)
    man["formatVersion"] = FORMAT_VERSION
    with open(os.path.join(bundle, "casa.json"), "w") as f:
        json.dump(man, f, indent=2)
    card = os.path.join(bundle, "README.md")
    if os.path.exists(card):
        with open(card) as f:
            text = f.read()
        with open(card, "w") as f:
            f.write(text.replace(f"Bundle format version {old} ", f"Bundle format version {FORMAT_VERSION} "))
    return dict(info, bundle=bundle, fromVersion=old, toVersion=FORMAT_VERSION, graphs=files, fixtureMaxAbsDiff=err)

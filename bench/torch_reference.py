"""B2 of `casa-live bench`: the project's own PyTorch incremental path on the same frames.

Run from the repository root:

    PYTHONPATH=. /usr/bin/python3 bench/torch_reference.py --bundle models/casa-tiny \
        --frames /tmp/stream/frames.rgb --count 200 --tokens 5 --threads 1 --repeats 3

The PyTorch weights (tools/casa_model/.work/*.pt) are build artefacts that are not committed,
so the model is rebuilt from the bundle itself: a freshly initialised CasaModel of the
bundle's shape is exported with the project's exporter (tools/casa_model/export.py) to learn
where each parameter lands among the ONNX initialisers (by name, transposed as a MatMul
operand, or — the vision encoder's row + column position table — constant-folded into one
sum), and the bundle's initialisers are loaded back through that map. The rebuilt model is
then checked against the bundle's parity fixtures (the packed full-sequence PyTorch logits
recorded at export time): the script refuses to time a model that does not reproduce them.

Timing: `Session` of tools/casa_model/stream.py (explicit caches, one decoder_step per
chunk, the same step functions that were exported), driven with the runtime's protocol:
prompt prefill (not timed), then per frame start_frame (vision, casa_kv, window swap,
markers), `--tokens` greedy tokens with EOS masked out (so every frame has exactly that
many, as casa-live does with eosBias -1e9), then EOS. No context cap (the reference has
none), so the bench runs casa-live uncapped too. Prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Tuple

import numpy as np
import torch

from tools.casa_model.data import FRAME_OPENING, normalise
from tools.casa_model.model import CasaModel, ModelConfig
from tools.casa_model.stream import Session
from tools.casa_model.tokenizer import ByteLevelBPE


def _read_json(path: str):
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


def graph_nodes(bundle: str, man: Dict) -> Dict[str, int]:
    """ONNX nodes per graph of the bundle (before onnxruntime's own graph optimisations)."""
    import onnx

    return {k: len(onnx.load(os.path.join(bundle, f)).graph.node) for k, f in man["files"].items() if f.endswith(".onnx")}


def config_from_bundle(bundle: str) -> ModelConfig:
    man = _read_json(os.path.join(bundle, "casa.json"))
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
    from tools.casa_model.export import export_graphs

    man = _read_json(os.path.join(bundle, "casa.json"))
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
        export_graphs(probe, tmp)
        probe_inits = {f: _onnx_initialisers(os.path.join(tmp, f), keyed=True) for f in files}
    state = {k: v.detach().clone() for k, v in probe.state_dict().items()}
    loaded = set()
    folded = 0
    for f in files:
        ours = probe_inits[f]
        theirs = _onnx_initialisers(os.path.join(bundle, f), keyed=True)
        if set(ours) != set(theirs):
            raise SystemExit(f"{bundle}/{f}: the graph's initialisers do not match a fresh export of the same shape "
                             f"({sorted(set(ours) ^ set(theirs))[:4]} ...); was it exported by another exporter version?")
        for name, probe_val in ours.items():
            val = theirs[name]
            if val.shape != probe_val.shape:
                raise SystemExit(f"{bundle}/{f}: initialiser {name} has shape {val.shape}, expected {probe_val.shape}")
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
            raise SystemExit(f"{bundle}/{f}: cannot place initialiser {name} {tuple(val.shape)} in the model")
    missing = sorted(set(params) - loaded)
    if missing:
        raise SystemExit(f"{bundle}: parameters not found in the ONNX graphs: {', '.join(missing)}")
    model = CasaModel(cfg)
    model.load_state_dict(state)
    return model.eval(), {"parameters": len(params), "foldedTables": folded}


@torch.no_grad()
def check_fixtures(model: CasaModel, tok: ByteLevelBPE, bundle: str) -> float:
    """Max |Δlogit| of the rebuilt model's streaming path against the bundle's fixtures."""
    fx = os.path.join(bundle, "fixtures")
    script = _read_json(os.path.join(fx, "session.json"))
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


@torch.no_grad()
def run_frames(model: CasaModel, tok: ByteLevelBPE, man: Dict, frames: np.ndarray, tokens: int) -> Dict:
    s = Session(model, tok)
    s.feed(tok.encode(man["prompt"]["text"]))
    eos = man["tokens"]["eos"]
    per_frame: List[float] = []
    produced = 0
    start = time.perf_counter()
    for rgb in frames:
        t0 = time.perf_counter()
        logits = s.start_frame(rgb)
        for _ in range(tokens):
            logits = logits.clone()
            logits[eos] = float("-inf")
            nxt = int(torch.argmax(logits))
            logits = s.feed([nxt])[-1]
            produced += 1
        s.feed([eos])
        per_frame.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - start
    return {"frames": len(frames), "seconds": wall, "fps": len(frames) / wall, "tokens": produced,
            "frameMs": [round(x, 3) for x in per_frame], "kvTokens": s.pos}


def main(argv=None) -> int:
    warnings.filterwarnings("ignore")  # the exporter's tracer warnings while rebuilding
    p = argparse.ArgumentParser()
    p.add_argument("--bundle", required=True)
    p.add_argument("--frames", required=True, help="concatenated rgb24 frames at the model's size")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--tokens", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3, help="frames captioned before timing (not counted)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    man = _read_json(os.path.join(a.bundle, "casa.json"))
    w, h = man["image"]["width"], man["image"]["height"]
    raw = np.fromfile(a.frames, dtype=np.uint8)
    if raw.size % (w * h * 3):
        raise SystemExit(f"{a.frames}: not a whole number of {w}x{h} rgb24 frames")
    all_frames = raw.reshape(-1, h, w, 3)
    if len(all_frames) < a.count:
        raise SystemExit(f"{a.frames}: {len(all_frames)} frames, {a.count} needed")
    frames = all_frames[: a.count]
    t = time.perf_counter()
    model, info = rebuild(a.bundle)
    rebuild_s = time.perf_counter() - t
    tok = ByteLevelBPE.load(os.path.join(a.bundle, man["files"]["tokenizer"]))
    if man["prompt"].get("frameOpening", "") != FRAME_OPENING:
        raise SystemExit(f"{a.bundle}: frameOpening {man['prompt']['frameOpening']!r} differs from the reference's {FRAME_OPENING!r}")
    tolerance = _read_json(os.path.join(a.bundle, "fixtures", "session.json")).get("tolerance", 1e-4)
    err = check_fixtures(model, tok, a.bundle)
    if not err <= tolerance:
        raise SystemExit(f"{a.bundle}: the rebuilt PyTorch model misses the parity fixtures (max |dlogit| {err:.3g} > {tolerance})")
    run_frames(model, tok, man, all_frames[: a.warmup], a.tokens)
    runs = [run_frames(model, tok, man, frames, a.tokens) for _ in range(a.repeats)]
    json.dump({
        "implementation": "tools/casa_model/stream.py Session (PyTorch eager, explicit caches)",
        "bundle": a.bundle, "fusion": man["fusion"], "threads": a.threads, "tokensPerFrame": a.tokens,
        "weights": "rebuilt from the bundle's ONNX initialisers", "rebuild": dict(info, seconds=round(rebuild_s, 2)),
        "numParams": model.num_params(),
        "graphNodes": graph_nodes(a.bundle, man),
        "fixtureMaxAbsDiff": err, "fixtureTolerance": tolerance,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "torchThreads": torch.get_num_threads(), "runs": runs,
    }, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

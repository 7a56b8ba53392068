"""B2 of `casa-live bench`: the project's own PyTorch incremental path on the same frames.

Run from the repository root:

    PYTHONPATH=. /usr/bin/python3 bench/torch_reference.py --bundle models/casa-tiny \
        --frames /tmp/stream/frames.rgb --count 200 --tokens 5 --threads 1 --repeats 3

The PyTorch weights (tools/casa_model/.work/*.pt) are build artefacts that are not committed,
so the model is rebuilt from the bundle's own ONNX weights (tools/casa_model/rebuild.py, also
used by the model worker's `torch` adapter) and checked against the bundle's parity fixtures
(the packed full-sequence PyTorch logits recorded at export time): the script refuses to time
a model that does not reproduce them.

Timing: `Session` of tools/casa_model/stream.py (explicit caches, one decoder_step per
chunk, the same step functions that were exported), driven with the runtime's protocol:
prompt prefill (not timed), then per frame start_frame (vision, casa_kv, window swap,
markers), `--tokens` greedy tokens with EOS masked out (so every frame has exactly that
many, as casa-live does with eosBias -1e9), the last one fed together with EOS (one step,
as casa-live does). No context cap (the reference has
none), so the bench runs casa-live uncapped too. Prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from typing import Dict, List

import numpy as np
import torch

from tools.casa_model.data import FRAME_OPENING
from tools.casa_model.model import CasaModel
from tools.casa_model.rebuild import BundleError, check_fixtures, read_json, rebuild
from tools.casa_model.stream import Session
from tools.casa_model.tokenizer import ByteLevelBPE


def graph_nodes(bundle: str, man: Dict) -> Dict[str, int]:
    """ONNX nodes per graph of the bundle (before onnxruntime's own graph optimisations)."""
    import onnx

    return {k: len(onnx.load(os.path.join(bundle, f)).graph.node) for k, f in man["files"].items() if f.endswith(".onnx")}


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
        for k in range(tokens):
            logits = logits.clone()
            logits[eos] = float("-inf")
            nxt = int(torch.argmax(logits))
            produced += 1
            if k == tokens - 1:
                s.feed([nxt, eos])  # the last token goes with EOS in one step, as in casa-live
            else:
                logits = s.feed([nxt])[-1]
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
    man = read_json(os.path.join(a.bundle, "casa.json"))
    w, h = man["image"]["width"], man["image"]["height"]
    raw = np.fromfile(a.frames, dtype=np.uint8)
    if raw.size % (w * h * 3):
        raise SystemExit(f"{a.frames}: not a whole number of {w}x{h} rgb24 frames")
    all_frames = raw.reshape(-1, h, w, 3)
    if len(all_frames) < a.count:
        raise SystemExit(f"{a.frames}: {len(all_frames)} frames, {a.count} needed")
    frames = all_frames[: a.count]
    t = time.perf_counter()
    try:
        model, info = rebuild(a.bundle)
    except BundleError as err:
        raise SystemExit(str(err))
    rebuild_s = time.perf_counter() - t
    tok = ByteLevelBPE.load(os.path.join(a.bundle, man["files"]["tokenizer"]))
    if man["prompt"].get("frameOpening", "") != FRAME_OPENING:
        raise SystemExit(f"{a.bundle}: frameOpening {man['prompt']['frameOpening']!r} differs from the reference's {FRAME_OPENING!r}")
    tolerance = read_json(os.path.join(a.bundle, "fixtures", "session.json")).get("tolerance", 1e-4)
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

"""B7 of `casa-live bench`: the physical limit — FLOPs per captioned frame counted from a
bundle's ONNX graphs, the matrix-product graphs the micro-benchmark times in onnxruntime, and
numpy / PyTorch matrix products for comparison. Run from the repository root:

    /usr/bin/python3 bench/physical_limit.py flops --bundle models/casa-tiny --tokens 5
    /usr/bin/python3 bench/physical_limit.py matmul-graphs --out DIR --sizes 64x128x384,512x512x512
    OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/physical_limit.py matmul-python --threads 2 --sizes …

Each prints one JSON object on stdout.

Counting rule (`flops`): one frame of the fixed-work protocol is the graph runs a caption
session makes for it — vision and casa_kv on one frame, then the decoder on the frame's
markers (2 tokens, empty window), on each sampled token but the last (one token each, the
window growing by one each time), and on the last one together with EOS (2 tokens: the
budget cuts the text, and the session feeds both in one step) — with a batch of one stream. The graphs'
symbolic input dimensions are bound to those sizes and onnx's shape inference (with data
propagation, and the exporter's shape arithmetic — Shape, Gather, Div, Slice … — folded into
constants where onnx does not follow it) gives every node's shapes. Counted: MatMul (2·M·N·K per product, times the
broadcast batch dimensions; a batch dimension shape inference leaves unknown is the one
stream, 1), Gemm (2·M·N·K) and Conv (2 · output elements · input channels per group ·
kernel elements). Not counted: normalisation, softmax, rotary, elementwise and data
movement nodes (their number is reported). The decoder's attention products grow linearly
with the self-attention cache length P the frame starts at, so the result is given as
`perFrame = constant + perCacheToken · P`, checked on a third length.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

COUNTED = ("MatMul", "Gemm", "Conv")


def _load(path: str):
    import onnx
    return onnx.load(path)


def _bind(model, dims: Dict[str, int]):
    """A copy of `model` whose symbolic input dimensions take the values in `dims`."""
    import onnx
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        for d in inp.type.tensor_type.shape.dim:
            if d.dim_param:
                if d.dim_param not in dims:
                    raise SystemExit(f"no size given for the input dimension {d.dim_param!r} of {inp.name}")
                value = dims[d.dim_param]
                d.ClearField("dim_param")
                d.dim_value = value
    return m


def _values(model, shapes) -> Dict[str, "object"]:
    """Small integer tensors whose values follow from the bound input sizes (the Shape →
    Gather → arithmetic → Concat chains an exporter writes for Reshape and Slice), which
    onnx's data propagation does not always follow (Div, Slice, Cast)."""
    import numpy as np
    from onnx import mapping, numpy_helper
    vals: Dict[str, object] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if _small(i.dims)}
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        ins = [vals.get(i) for i in node.input]
        try:
            if node.op_type == "Constant" and "value" in attrs:
                v = numpy_helper.to_array(attrs["value"].t)
            elif node.op_type == "Shape" and None not in (shapes.get(node.input[0]) or [None]):
                v = np.array(shapes[node.input[0]], np.int64)[attrs["start"].i if "start" in attrs else 0:
                                                               attrs["end"].i if "end" in attrs else None]
            elif any(x is None for x in ins) or node.op_type not in _FOLD:
                continue
            else:
                v = _FOLD[node.op_type](ins, attrs, np, mapping)
        except Exception:  # noqa: BLE001 - an op we cannot evaluate stays unknown
            continue
        if getattr(v, "size", 0) <= 64:
            vals[node.output[0]] = np.asarray(v)
    return vals


def _small(dims) -> bool:
    n = 1
    for d in dims:
        n *= d
    return n <= 64


def _slice(ins, attrs, np, mapping):
    data, starts, ends = ins[0], ins[1], ins[2]
    axes = ins[3] if len(ins) > 3 else range(len(starts))
    steps = ins[4] if len(ins) > 4 else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


_FOLD = {
    "Gather": lambda x, a, np, m: np.take(x[0], x[1], axis=a["axis"].i if "axis" in a else 0),
    "Unsqueeze": lambda x, a, np, m: np.expand_dims(x[0], tuple(int(i) for i in x[1])),
    "Squeeze": lambda x, a, np, m: np.squeeze(x[0], tuple(int(i) for i in x[1])) if len(x) > 1 else np.squeeze(x[0]),
    "Concat": lambda x, a, np, m: np.concatenate([np.atleast_1d(v) for v in x], axis=a["axis"].i),
    "Add": lambda x, a, np, m: x[0] + x[1],
    "Sub": lambda x, a, np, m: x[0] - x[1],
    "Mul": lambda x, a, np, m: x[0] * x[1],
    "Div": lambda x, a, np, m: (np.trunc(x[0] / x[1]).astype(x[0].dtype) if x[0].dtype.kind == "i" else x[0] / x[1]),
    "Cast": lambda x, a, np, m: x[0].astype(m.TENSOR_TYPE_TO_NP_TYPE[a["to"].i]),
    "Slice": _slice,
}


def _folded(model, shapes):
    """`model` with every node whose value is known replaced by a Constant of that value."""
    from onnx import helper, numpy_helper
    vals = _values(model, shapes)
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Constant" and len(node.output) == 1 and node.output[0] in vals:
            nodes.append(helper.make_node("Constant", [], [node.output[0]], value=numpy_helper.from_array(vals[node.output[0]])))
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _shapes(model) -> Dict[str, List[Optional[int]]]:
    """Every tensor's shape (None where unknown), folding known shape arithmetic until it settles."""
    shapes = _inferred_shapes(model)
    for _ in range(4):
        before = sum(1 for s in shapes.values() if None not in s)
        model = _folded(model, shapes)
        shapes = _inferred_shapes(model)
        if sum(1 for s in shapes.values() if None not in s) == before:
            break
    return shapes


def _inferred_shapes(model) -> Dict[str, List[Optional[int]]]:
    from onnx import shape_inference
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    out: Dict[str, List[Optional[int]]] = {i.name: list(i.dims) for i in inferred.graph.initializer}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    for node in inferred.graph.node:  # Constant nodes: their tensor's dims
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = list(a.t.dims)
    return out


def _broadcast(a: Sequence[Optional[int]], b: Sequence[Optional[int]]) -> List[int]:
    """Broadcast batch dimensions; an unknown one takes the other operand's, else 1 (one stream)."""
    n = max(len(a), len(b))
    a = [1] * (n - len(a)) + list(a)
    b = [1] * (n - len(b)) + list(b)
    return [max(x or 1, y or 1) for x, y in zip(a, b)]


def _node_flops(node, shapes) -> Optional[int]:
    """FLOPs of one counted node, or None when its shapes are not known."""
    a = shapes.get(node.input[0])
    b = shapes.get(node.input[1]) if len(node.input) > 1 else None
    if node.op_type == "MatMul":
        if not a or not b or a[-1] is None or b[-1] is None:
            return None
        a2 = [1] + a if len(a) == 1 else a
        b2 = b + [1] if len(b) == 1 else b
        m, k, n = a2[-2], a2[-1], b2[-1]
        if m is None or n is None:
            return None
        batch = 1
        for d in _broadcast(a2[:-2], b2[:-2]):
            batch *= d
        return 2 * batch * m * n * k
    if node.op_type == "Gemm":
        attrs = {x.name: x.i for x in node.attribute}
        if not a or not b or None in a or None in b:
            return None
        m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
        n = b[0] if attrs.get("transB") else b[1]
        return 2 * m * n * k
    if node.op_type == "Conv":
        out = shapes.get(node.output[0])
        if not out or not b or None in out or None in b:
            return None
        elements = 1
        for d in out:
            elements *= d
        per_output = 1
        for d in b[1:]:  # weight [Cout, Cin/group, kH, kW]
            per_output *= d
        return 2 * elements * per_output
    return None


def count(model, dims: Dict[str, int]) -> Dict:
    """Counted FLOPs of one run of `model` with its symbolic dimensions bound to `dims`."""
    bound = _bind(model, dims)
    shapes = _shapes(bound)
    flops = 0
    by_op: Dict[str, int] = {}
    unknown: List[str] = []
    other = 0
    for node in bound.graph.node:
        if node.op_type not in COUNTED:
            if node.op_type != "Constant":
                other += 1
            continue
        f = _node_flops(node, shapes)
        if f is None:
            unknown.append(node.name or node.op_type)
            continue
        flops += f
        by_op[node.op_type] = by_op.get(node.op_type, 0) + f
    return {"flops": flops, "byOp": by_op, "unknownNodes": unknown, "uncountedNodes": other}


def frame_runs(man: Dict, tokens: int, cache: int) -> List[Dict]:
    """The graph runs of one frame (CASA, one stream) starting at cache length `cache`."""
    n = man["image"]["tokensPerFrame"]
    runs = [{"graph": "vision", "dims": {"frames": 1}}, {"graph": "casaKv", "dims": {"frames": 1}}]
    # The markers; each sampled token but the last fed alone; the last one fed with EOS (the
    # budget cuts the text: caption-session.ts feeds them in one step).
    steps = [2] + [1] * (tokens - 1) + [2]
    p, w = cache, 0
    for t in steps:
        runs.append({"graph": "decoder", "dims": {"batch": 1, "tokens": t, "past": p, "image_tokens": n, "window": w}})
        p += t
        w += t
    return runs


def frame_flops(bundle: str, tokens: int, cache: int, graphs: Dict) -> Dict:
    with open(os.path.join(bundle, "casa.json")) as f:
        man = json.load(f)
    runs = []
    total = 0
    for r in frame_runs(man, tokens, cache):
        c = count(graphs[r["graph"]], r["dims"])
        runs.append({**r, **c})
        total += c["flops"]
    return {"cache": cache, "flops": total, "runs": runs}


def cmd_flops(args) -> Dict:
    with open(os.path.join(args.bundle, "casa.json")) as f:
        man = json.load(f)
    if man["fusion"] != "casa":
        raise SystemExit(f"{args.bundle}: flops counts CASA bundles (fusion {man['fusion']})")
    graphs = {k: _load(os.path.join(args.bundle, man["files"][k])) for k in ("vision", "casaKv", "decoder")}
    cap = int(man["context"]["maxContextTokens"])
    lo, mid, hi = (frame_flops(args.bundle, args.tokens, p, graphs) for p in (0, cap // 2, cap))
    per_token = (hi["flops"] - lo["flops"]) / cap
    predicted_mid = lo["flops"] + per_token * (cap // 2)
    return {
        "bundle": args.bundle,
        "tokensPerFrame": args.tokens,
        "rule": __doc__.split("Counting rule (`flops`): ")[1].strip().replace("\n", " "),
        "perFrame": {"constant": lo["flops"], "perCacheToken": per_token},
        "linearityCheck": {"cache": cap // 2, "counted": mid["flops"], "predicted": predicted_mid},
        "atCache": {str(r["cache"]): r for r in (lo, mid, hi)},
        "graphNodes": {k: len(g.graph.node) for k, g in graphs.items()},
    }


def _sizes(spec: str) -> List[List[int]]:
    return [[int(x) for x in s.split("x")] for s in spec.split(",") if s]


def cmd_matmul_graphs(args) -> Dict:
    """One graph per size: A [M, K] (input) × B [K, N] (a weight initialiser, as the model's)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    os.makedirs(args.out, exist_ok=True)
    written = []
    rng = np.random.default_rng(0)
    for m, k, n in _sizes(args.sizes):
        w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "B")
        graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], f"matmul_{m}x{k}x{n}",
                                  [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
                                  [helper.make_tensor_value_info("C", TensorProto.FLOAT, [m, n])], [w])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="casa-live bench")
        model.ir_version = 8
        path = os.path.join(args.out, f"matmul-{m}x{k}x{n}.onnx")
        onnx.save(model, path)
        written.append({"m": m, "k": k, "n": n, "path": path})
    return {"graphs": written}


def _time(fn, seconds: float) -> Dict:
    fn()
    runs = 0
    start = time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return {"runs": runs, "seconds": elapsed}


def cmd_matmul_python(args) -> Dict:
    """numpy (its BLAS) and PyTorch matrix products of the same sizes, `--threads` threads."""
    import numpy as np
    out: Dict = {"threads": args.threads, "numpy": [], "torch": [], "versions": {"numpy": np.__version__}}
    rng = np.random.default_rng(0)
    try:
        import torch
        torch.set_num_threads(args.threads)
        out["versions"]["torch"] = torch.__version__
    except ImportError:
        torch = None
    for m, k, n in _sizes(args.sizes):
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        r = _time(lambda: np.matmul(a, b, out=c), args.seconds)
        out["numpy"].append({"m": m, "k": k, "n": n, **r, "gflops": 2 * m * k * n * r["runs"] / r["seconds"] / 1e9})
        if torch is not None:
            ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
            r = _time(lambda: torch.matmul(ta, tb, out=tc), args.seconds)
            out["torch"].append({"m": m, "k": k, "n": n, **r, "gflops": 2 * m * k * n * r["runs"] / r["seconds"] / 1e9})
    try:
        from numpy.__config__ import get_info  # type: ignore
        out["numpyBlas"] = sorted(k for k in ("openblas_info", "blas_mkl_info", "blis_info") if get_info(k))
    except Exception:  # noqa: BLE001 - only informative
        pass
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/physical_limit.py")
    p.add_argument("command", choices=["flops", "matmul-graphs", "matmul-python"])
    p.add_argument("--bundle")
    p.add_argument("--tokens", type=int, default=5)
    p.add_argument("--out")
    p.add_argument("--sizes", default="64x128x384,256x128x384,512x512x512,1024x1024x1024")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=1.0)
    args = p.parse_args(argv)
    commands = {"flops": cmd_flops, "matmul-graphs": cmd_matmul_graphs, "matmul-python": cmd_matmul_python}
    json.dump(commands[args.command](args), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

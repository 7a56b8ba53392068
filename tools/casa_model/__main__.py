"""`python3 -m tools.casa_model build` — rebuilds the embedded models from nothing:
world data → tokenizer → CASA and insertion training → ONNX export → evaluation → clips.

Each stage writes under tools/casa_model/.work/ (cache, not committed) and the final
bundles under models/. Stages can be run alone: data, train, export, eval, clips; and
`reexport --bundle DIR…` rewrites committed bundles in the current format version from
their own ONNX weights (no training); `compressed --tokens K --out DIR` writes the insertion
twin with a random Q-Former-style connector giving K image tokens per frame (benchmark B1).
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import signal
import sys
import time

import numpy as np
import torch

from .data import caption_text
from .evaluate import evaluate
from .export import export_bundle, write_model_card
from .model import CasaModel, ModelConfig
from .tokenizer import ByteLevelBPE, train_bpe
from .train import train
from .world import make_clip, render_clip

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.environ.get("CASA_MODEL_WORK") or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".work")
# Disjoint seed ranges per split.
TRAIN_SEEDS = (0, 1_000_000)
VAL_SEEDS = (1_000_000, 2_000_000)
TEST_SEEDS = (2_000_000, 3_000_000)
DEMO_SEED = 2_500_000


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def stage_data(args) -> None:
    os.makedirs(WORK, exist_ok=True)
    seeds = list(range(TRAIN_SEEDS[0], TRAIN_SEEDS[0] + args.train_clips))
    clips = [make_clip(s, args.clip_frames) for s in seeds]
    # merges learnt from the first `frames` frames of each clip: the text of streams from their start
    tok = train_bpe([caption_text(c) for clip in clips for c in clip.captions[: args.frames] if c], args.merges)
    tok.save(os.path.join(WORK, "tokenizer.json"))
    t = time.time()
    # one process per core: rendering is pure numpy, and nothing else runs during this stage
    with multiprocessing.get_context("spawn").Pool(max(1, args.threads)) as pool:
        frames = np.stack(pool.map(functools.partial(render_clip, size=args.image_size), clips, chunksize=20))
    np.save(os.path.join(WORK, "train_frames.npy"), frames)
    with open(os.path.join(WORK, "data.json"), "w") as f:
        json.dump({"seeds": seeds, "frames": args.clip_frames, "imageSize": args.image_size, "merges": args.merges,
                   "vocab": tok.size}, f)
    log(f"data: {len(clips)} clips x {args.clip_frames} frames rendered in {time.time() - t:.0f}s; vocab {tok.size}")


def _load_data():
    meta = read_json(os.path.join(WORK, "data.json"))
    tok = ByteLevelBPE.load(os.path.join(WORK, "tokenizer.json"))
    clips = [make_clip(s, meta["frames"]) for s in meta["seeds"]]
    frames = np.load(os.path.join(WORK, "train_frames.npy"), mmap_mode="r")
    return meta, tok, clips, frames


def _config(fusion: str, tok: ByteLevelBPE, args, **kw) -> ModelConfig:
    return ModelConfig(fusion=fusion, vocab_size=tok.size, image_size=args.image_size, **kw)


VARIANTS = {
    "casa": dict(fusion="casa"),
    "insertion": dict(fusion="insertion"),
    "crossattn": dict(fusion="casa", casa_window_text=False),
}
# A CASA step is cheaper than the insertion twin's, so in the time the twin takes for its one
# leg the CASA variants train a second, shorter leg at a lower rate (the cosine restarted),
# then, alone on the cores, a third ("polish") leg with misnamed history.
REFINED = {"casa", "crossattn"}
# Those later legs, in order: option prefix, ordinal for the help, default steps, peak lr and
# share of sequences with misnamed history.
LATER_LEGS = (("refine", "second", 2000, 1e-3, 0.0), ("polish", "third", 1500, 1e-3, 0.5))


def stage_train(args) -> None:
    if len(args.variants) > 1 and args.parallel:
        _train_in_parallel(args)
        return
    signal.signal(signal.SIGUSR1, _take_all_cores)
    meta, tok, clips, frames = _load_data()
    frames = np.asarray(frames)
    for variant in args.variants:
        kw = dict(VARIANTS[variant])
        cfg = _config(kw.pop("fusion"), tok, args, **kw)
        torch.manual_seed(args.seed)
        model = CasaModel(cfg)
        legs = []
        if args.init:
            # continue from an earlier run's weights (same config, same tokenizer)
            ck = torch.load(os.path.join(args.init, f"{variant}.pt"))
            if {**ck["config"], "casa_layers": tuple(ck["config"]["casa_layers"])} != cfg.__dict__:
                raise SystemExit(f"--init {args.init}/{variant}.pt was trained with another config")
            model.load_state_dict(ck["state"])
            legs = ck["train"].get("legs") or [ck["train"]]
        plan = [(args.steps, args.lr, args.misnamed)]
        if variant in REFINED and not args.init:
            later = [tuple(getattr(args, f"{leg}_{k}") for k in ("steps", "lr", "misnamed")) for leg, *_ in LATER_LEGS]
            plan += [(n, lr, p) for n, lr, p in later if n]
        log(f"train {variant}: {model.num_params():,} parameters, "
            + " then ".join(f"{n} steps at lr {lr:g}" + (f" ({p:g} misnamed)" if p else "") for n, lr, p in plan)
            + f" x batch {args.batch}"
            + (f", {args.two_objects:g} of sequences drawn to end among two objects" if args.two_objects else "")
            + (f", continuing {sum(l['steps'] for l in legs)} steps from {args.init}" if legs else ""))
        for steps, lr, p_misnamed in plan:
            legs.append(train(model, clips, frames, tok, steps=steps, batch_size=args.batch, lr=lr,
                              seed=args.seed + len(legs), span=args.frames, p_misnamed=p_misnamed,
                              p_two=args.two_objects, log=log))
        info = {"steps": sum(l["steps"] for l in legs), "batchSize": args.batch, "lr": args.lr,
                "seconds": sum(l["seconds"] for l in legs), "legs": legs}
        torch.save({"config": cfg.__dict__, "state": model.state_dict(), "train": info},
                   os.path.join(WORK, f"{variant}.pt"))


def _train_in_parallel(args) -> None:
    """One process per variant, the cores shared out: on 2 cores two 1-thread trainings
    finish sooner than the same two trainings one after the other with 2 threads each."""
    import subprocess
    threads = max(1, args.threads // len(args.variants))
    forwarded = ["steps", "batch", "lr", "seed", "misnamed", "two-objects", "frames", "image-size"]
    forwarded += [f"{leg}-{k}" for leg, *_ in LATER_LEGS for k in ("steps", "lr", "misnamed")]
    argv = [sys.executable, "-m", "tools.casa_model", "train", "--no-parallel", "--threads", str(threads)]
    argv += [a for name in forwarded for a in (f"--{name}", str(getattr(args, name.replace("-", "_"))))]
    argv += ["--init", args.init] if args.init else []
    # each child inherits the package's one-thread OpenBLAS (see __init__.py; without it two
    # 1-thread trainings oversubscribed the 2 cores: 1.8 instead of 0.85 s per CASA step)
    procs = {v: subprocess.Popen(argv + ["--variants", v], cwd=ROOT) for v in args.variants}
    codes: dict = {}
    while len(codes) < len(procs):
        time.sleep(1)
        for v, p in procs.items():
            if v not in codes and p.poll() is not None:
                codes[v] = p.returncode
                running = [q for w, q in procs.items() if w not in codes and q.poll() is None]
                if len(running) == 1 and p.returncode == 0:  # the last one takes the cores left
                    running[0].send_signal(signal.SIGUSR1)
    if any(codes.values()):
        raise SystemExit(f"training failed: exit codes {codes}")


def _take_all_cores(*_) -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    log(f"training now alone: {torch.get_num_threads()} threads")


def _load_model(variant: str) -> tuple:
    ck = torch.load(os.path.join(WORK, f"{variant}.pt"))
    cfg_d = dict(ck["config"])
    cfg_d["casa_layers"] = tuple(cfg_d["casa_layers"])
    model = CasaModel(ModelConfig(**cfg_d))
    model.load_state_dict(ck["state"])
    return model.eval(), ck["train"]


def stage_eval(args) -> None:
    tok = ByteLevelBPE.load(os.path.join(WORK, "tokenizer.json"))
    seeds = list(range(TEST_SEEDS[0], TEST_SEEDS[0] + args.test_clips))
    for variant in args.variants:
        model, info = _load_model(variant)
        res = evaluate(model, tok, seeds, args.frames)
        res.update({"model": variant, "params": model.num_params(), "trainMinutes": round(info["seconds"] / 60, 1),
                    "trainSteps": info["steps"], "batchSize": info["batchSize"]})
        with open(os.path.join(WORK, f"eval-{variant}.json"), "w") as f:
            json.dump(res, f, indent=2)
        log(f"eval {variant}: exact {res['frameExactMatch']:.3f} tokenF1 {res['tokenF1']:.3f} on {res['frames']} frames")


BUNDLES = {"casa": "casa-tiny", "insertion": "casa-tiny-insertion"}


def stage_export(args) -> None:
    tok = ByteLevelBPE.load(os.path.join(WORK, "tokenizer.json"))
    evals = {v: read_json(os.path.join(WORK, f"eval-{v}.json")) for v in VARIANTS
             if os.path.exists(os.path.join(WORK, f"eval-{v}.json"))}
    for variant, name in BUNDLES.items():
        model, info = _load_model(variant)
        out = os.path.join(ROOT, "models", name)
        legs = [{k: v for k, v in leg.items() if k != "history"} for leg in info.get("legs", [])]
        training = {k: info[k] for k in ("steps", "batchSize", "lr", "seconds")}
        if len(legs) > 1:
            training["legs"] = legs
        export_bundle(model, tok, out, name, {"training": training})
        ev = dict(evals.get(variant, {}))
        ev["compare"] = {v: {k: e[k] for k in ("frameExactMatch", "tokenF1", "params")} for v, e in evals.items()}
        with open(os.path.join(out, "eval.json"), "w") as f:
            json.dump(ev, f, indent=2)
        write_model_card(out, read_json(os.path.join(out, "casa.json")), ev)
        log(f"export {name}: {sum(os.path.getsize(os.path.join(out, p)) for p in os.listdir(out) if p.endswith('.onnx')) / 1e6:.1f} MB of ONNX")


def stage_clips(args) -> None:
    from .clips import write_examples
    write_examples(os.path.join(ROOT, "examples"), DEMO_SEED, [TEST_SEEDS[0] + 900_000 + i for i in range(3)])
    log("clips: examples/ written")


def stage_stream(args) -> None:
    """Writes one long world stream for runtime tests: frames.rgb (rgb24, concatenated) and
    truth.json (captions per frame)."""
    args.out = args.out or os.path.join(WORK, "stream")
    os.makedirs(args.out, exist_ok=True)
    clip = make_clip(args.stream_seed, args.stream_frames)
    with open(os.path.join(args.out, "frames.rgb"), "wb") as f:
        for k in range(0, len(clip.frames), 200):
            part = clip.frames[k:k + 200]
            f.write(render_clip(type(clip)(clip.seed, clip.background, part), args.image_size).tobytes())
    with open(os.path.join(args.out, "truth.json"), "w") as f:
        json.dump({"seed": args.stream_seed, "fps": 2.0, "width": args.image_size, "height": args.image_size,
                   "captions": clip.captions}, f)
    log(f"stream: {len(clip.frames)} frames of seed {args.stream_seed} in {args.out}")


def stage_reexport(args) -> None:
    """Re-exports a committed bundle in the current format version from its own ONNX weights
    (no training): see tools/casa_model/rebuild.py."""
    from .rebuild import BundleError, reexport
    if not args.bundle:
        raise SystemExit("reexport needs --bundle DIR")
    for bundle in args.bundle:
        try:
            r = reexport(bundle)
        except BundleError as err:
            raise SystemExit(str(err)) from None
        log(f"reexport {bundle}: format {r['fromVersion']} -> {r['toVersion']}, wrote {', '.join(r['graphs']) or 'no graph'}; "
            f"rebuilt model within {r['fixtureMaxAbsDiff']:.2g} of the fixtures")


def stage_compressed(args) -> None:
    """Writes a token-compressed insertion bundle (a random Q-Former-style connector giving
    --tokens image tokens per frame) for benchmark B1: see tools/casa_model/compressed.py."""
    from .compressed import build_compressed
    bundle = (args.bundle or [os.path.join(ROOT, "models", BUNDLES["insertion"])])[0]
    out = args.out or os.path.join(WORK, f"compressed-q{args.tokens}")
    r = build_compressed(bundle, out, args.tokens, args.seed)
    log(f"compressed: {out}: {r['tokens']} image tokens per frame instead of {r['sourceTokens']} "
        f"({r['connectorParameters']:,} connector parameters, random)")


# The stages by name; `build` runs BUILD in order.
STAGES = {"data": stage_data, "train": stage_train, "eval": stage_eval, "export": stage_export,
          "clips": stage_clips, "stream": stage_stream, "reexport": stage_reexport, "compressed": stage_compressed}
BUILD = ("data", "train", "eval", "export", "clips")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m tools.casa_model")
    p.add_argument("stage", choices=["build", *STAGES])
    p.add_argument("--out", help="stream, compressed: output directory (default under tools/casa_model/.work/)")
    p.add_argument("--bundle", nargs="+", help="reexport: bundle directories, rewritten in place; "
                   "compressed: the insertion bundle (default models/casa-tiny-insertion)")
    p.add_argument("--tokens", type=int, default=4, help="compressed: image tokens per frame")
    p.add_argument("--stream-seed", type=int, default=TEST_SEEDS[0] + 800_000)
    p.add_argument("--stream-frames", type=int, default=2000)
    p.add_argument("--train-clips", type=int, default=3000)
    p.add_argument("--test-clips", type=int, default=100)
    p.add_argument("--frames", type=int, default=24, help="frames per training sequence and per test clip")
    p.add_argument("--clip-frames", type=int, default=48,
                   help="frames rendered per training clip (later stretches train long-stream behaviour)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--merges", type=int, default=80)
    p.add_argument("--steps", type=int, default=4400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--misnamed", type=float, default=0.0,
                   help="train: share of the first leg's sequences with one earlier caption naming the wrong shape")
    for leg, ordinal, steps, lr, misnamed in LATER_LEGS:
        p.add_argument(f"--{leg}-steps", type=int, default=steps,
                       help=f"train: steps of the CASA variants' {ordinal} leg (0: none; not with --init)")
        p.add_argument(f"--{leg}-lr", type=float, default=lr, help=f"train: peak lr of that {ordinal} leg")
        p.add_argument(f"--{leg}-misnamed", type=float, default=misnamed, help="train: the same share for that leg")
    p.add_argument("--two-objects", type=float, default=0.0,
                   help="train: share of sequences (every leg) redrawn to end on a frame with two objects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=True,
                   help="train: one process per variant, sharing the cores (default)")
    p.add_argument("--init", help="train: a directory with an earlier run's <variant>.pt to continue from")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--variants", nargs="+", default=["casa", "insertion"], choices=list(VARIANTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    stages = BUILD if args.stage == "build" else (args.stage,)
    start = time.time()
    for name in stages:
        STAGES[name](args)
    log(f"done in {(time.time() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

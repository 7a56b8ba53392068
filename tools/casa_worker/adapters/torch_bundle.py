"""The `torch` adapter: one of this project's bundles (casa-tiny, its insertion twin, any
bundle tools/casa_model exports) rebuilt in PyTorch and driven with the ONNX engine's
protocol (docs/architecture.md §Session state machine): the prompt prefilled as window 0,
then per frame vision (→ casa_kv and a window swap, or the image chunk for insertion),
the markers (+ the frame opening on the first frame), the sampled tokens and a stop token,
under the same bounded context. Greedy captions are therefore those of the ONNX engine.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from tools.casa_model.rebuild import BundleError, check_fixtures, read_json, rebuild

from .base import FrameStart, OpenedState
from ..context import BoundedContext, Policy, cut_and_rotate, inverse_frequencies, policy_from
from ..protocol import WorkerError

def normalise(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [H, W, 3] → float32 [1, 3, H, W]: (x/255 − mean)/std in float32, as the engine does."""
    x = rgb.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.moveaxis(x, -1, 0)[None].copy())


class BundleState:
    """One session's caches: the capped self-attention cache, and for CASA the current
    frame's image K/V and the window's text K/V."""

    def __init__(self, adapter: "TorchBundleAdapter", policy: Policy):
        cfg = adapter.model.cfg
        self.adapter = adapter
        self.cfg = cfg
        self.past_k = torch.zeros(cfg.layers, 1, cfg.kv_heads, 0, cfg.head_dim)
        self.past_v = torch.zeros_like(self.past_k)
        c = len(cfg.active_casa_layers)
        self.img_k = torch.zeros(c, 1, cfg.kv_heads, 0, cfg.head_dim)
        self.img_v = torch.zeros_like(self.img_k)
        self.win_k = torch.zeros(c, 1, cfg.kv_heads, 0, cfg.head_dim)
        self.win_v = torch.zeros_like(self.win_k)
        self.context = BoundedContext(policy, self)
        self.fed = 0
        self.frames = 0
        self.forwards = 0
        self.model_ms = 0.0

    # ---------------------------------------------------------------- KvStore
    def length(self) -> int:
        return int(self.past_k.shape[3])

    def evict(self, start: int, count: int) -> None:
        self.past_k = cut_and_rotate(self.past_k, start, count, 3, self.adapter.inv_freq)
        self.past_v = cut_and_rotate(self.past_v, start, count, 3, None)

    # ---------------------------------------------------------------- steps
    @torch.no_grad()
    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        """Feeds text tokens; returns the logits of the last one."""
        with self.adapter.placement():
            self.context.ensure_room(len(ids), False)
            return self._step(list(ids))[-1]

    @torch.no_grad()
    def start_frame(self, pixels: torch.Tensor, ids: List[int]) -> torch.Tensor:
        with self.adapter.placement():
            return self._start_frame(pixels.to(self.adapter.device), ids)

    def _start_frame(self, pixels: torch.Tensor, ids: List[int]) -> torch.Tensor:
        t0 = time.perf_counter()
        model = self.adapter.model
        embeds = model.vision(pixels)
        self.frames += 1
        if self.cfg.fusion == "casa":
            self.img_k, self.img_v = model.casa_kv(embeds)
            self.win_k = self.win_k[:, :, :, :0]
            self.win_v = self.win_v[:, :, :, :0]
            self._charge(t0)
            self.context.ensure_room(len(ids), True)
            self.context.mark_frame_start()
            return self._step(ids)[-1]
        n = int(embeds.shape[1])
        self._charge(t0)
        self.context.ensure_room(len(ids) + n, True)
        self.context.mark_frame_start()
        self._step(ids[:1])
        self.context.mark_image_tokens(n)
        return self._step(ids[1:], embeds)[-1]

    def _step(self, ids: List[int], image: Optional[torch.Tensor] = None) -> torch.Tensor:
        t0 = time.perf_counter()
        model, cfg = self.adapter.model, self.cfg
        p = self.length()
        input_ids = torch.tensor([ids], dtype=torch.long)
        if cfg.fusion == "casa":
            w = int(self.win_k.shape[3])
            pos = torch.arange(p, p + len(ids))[None]
            wpos = torch.arange(w + 1, w + len(ids) + 1)[None]
            logits, nk, nv, nwk, nwv = model.decoder_step(
                input_ids, pos, wpos, self.past_k, self.past_v, self.img_k, self.img_v, self.win_k, self.win_v)
            self.win_k = torch.cat([self.win_k, nwk], 3)
            self.win_v = torch.cat([self.win_v, nwv], 3)
            rows = logits[0]
        else:
            embeds = image if image is not None else torch.zeros(1, 0, cfg.hidden)
            n = int(embeds.shape[1])
            pos = torch.arange(p, p + n + len(ids))[None]
            logits, nk, nv = model.insertion_step(input_ids, embeds, pos, self.past_k, self.past_v)
            rows = logits[0, n:]
        self.past_k = torch.cat([self.past_k, nk], 3)
        self.past_v = torch.cat([self.past_v, nv], 3)
        self.fed += len(ids)
        self._charge(t0)
        return rows

    def _charge(self, t0: float) -> None:
        self.forwards += 1
        self.model_ms += (time.perf_counter() - t0) * 1000

    def stats(self) -> Dict[str, float]:
        length = self.length()
        image = self.context.image_tokens
        casa = self.cfg.fusion == "casa"
        per_token = 4 * 2 * self.cfg.kv_heads * self.cfg.head_dim
        window = int(self.win_k.shape[3]) if casa else 0
        image_held = int(self.img_k.shape[3]) if casa else 0
        c = len(self.cfg.active_casa_layers)
        kv_bytes = per_token * (self.cfg.layers * length + c * (window + image_held))
        return {
            "kvTokens": length, "textKvTokens": length - image, "imageKvTokens": image,
            "windowTokens": window, "imageTokens": image_held, "nextPosition": length,
            "evictions": self.context.evictions, "evictedTokens": self.context.evicted_tokens,
            "kvBytes": kv_bytes, "kvCapacityBytes": kv_bytes, "textTokensFed": self.fed,
            "modelMs": self.model_ms, "forwards": self.forwards,
        }


class TorchBundleAdapter:
    name = "torch"

    def __init__(self, bundle_dir: str, device: str, log):
        self.dir = bundle_dir
        check_bundle_files(bundle_dir)
        try:
            self.manifest = read_json(os.path.join(bundle_dir, "casa.json"))
            from tools.casa_model.tokenizer import ByteLevelBPE

            self.tokenizer = ByteLevelBPE.load(os.path.join(bundle_dir, self.manifest["files"]["tokenizer"]))
            with warnings.catch_warnings():  # the exporter's tracer warnings while the map is learnt
                warnings.simplefilter("ignore")
                model, _ = rebuild(bundle_dir)
            self.fixture_diff = check_fixtures(model, self.tokenizer, bundle_dir) if os.path.isdir(os.path.join(bundle_dir, "fixtures")) else None
        except ImportError as err:
            raise WorkerError("missing_package", f"The worker's Python lacks the package {err.name}, needed to rebuild the bundle; install it (e.g. apt-get install python3-onnx).") from None
        except (BundleError, KeyError, OSError, ValueError) as err:
            raise WorkerError("bad_model", f"The bundle {bundle_dir} cannot be rebuilt in PyTorch: {err}") from None
        self.device = pick_device(device)
        self.model = model.eval().to(self.device)
        m = self.manifest
        self.inv_freq = inverse_frequencies(m["decoder"]["headDim"], float(m["decoder"]["ropeTheta"]))
        self.prompt_ids = self.tokenizer.encode(m["prompt"]["text"])
        opening = m["prompt"].get("frameOpening", "")
        self.opening_ids = self.tokenizer.encode(opening) if opening else []
        self.vocab_size = int(m["decoder"]["vocabSize"])
        tokens = m["tokens"]
        self.markers = [tokens["preImage"], tokens["postImage"]]
        self.stop_ids = [tokens["eos"]]
        log(f"torch adapter: {m['name']} ({m['fusion']}) rebuilt from {bundle_dir}; fixtures max |dlogit| {self.fixture_diff}")

    def placement(self):
        """Where the model code's own tensors (positions, masks) are made: the model's device."""
        return torch.device(self.device) if self.device != "cpu" else contextlib.nullcontext()

    def info(self) -> Dict:
        m = self.manifest
        img = m["image"]
        return {
            "name": m["name"], "adapter": self.name, "fusion": m["fusion"],
            "image": {"width": img["width"], "height": img["height"], "fit": img["fit"], "tokensPerFrame": img["tokensPerFrame"]},
            "fps": m["generation"]["fps"], "stopIds": self.stop_ids, "device": self.device, "dtype": "float32",
            "acceptsPrompt": False, "promptTokens": len(self.prompt_ids), "frameOpeningTokens": len(self.opening_ids),
            "vocabSize": self.vocab_size,
            "defaults": {**m["generation"], "penaltyIgnore": m["tokens"]["penaltyIgnore"],
                         "maxContextTokens": m["context"]["maxContextTokens"], "evictChunk": m["context"]["evictChunk"],
                         "stopBias": 1.0, "noRepeatNgramSize": 0, "noRepeatNgramWindow": 60},
        }

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def open(self, prompt: Optional[str], options: Dict) -> OpenedState:
        if prompt is not None:
            raise WorkerError("bad_options", f"the model {self.manifest['name']} was trained with a fixed prompt; it takes no generation.prompt")
        with self.placement():
            state = BundleState(self, policy_from(options, len(self.prompt_ids)))
        state.feed(self.prompt_ids)
        return OpenedState(state, list(self.prompt_ids))

    def start_frame(self, opened: OpenedState, rgb: np.ndarray) -> FrameStart:
        img = self.manifest["image"]
        rgb = fit_frame(rgb, img["width"], img["height"])
        pixels = normalise(rgb, img["mean"], img["std"])
        state: BundleState = opened.state
        ids = self.markers + (self.opening_ids if state.frames == 0 else [])
        return FrameStart(state.start_frame(pixels, ids), ids)

    def feed(self, opened: OpenedState, ids: Sequence[int]) -> torch.Tensor:
        return opened.state.feed(ids)

    def end_frame(self, opened: OpenedState) -> None:
        return None

    def stats(self, opened: OpenedState) -> Dict[str, float]:
        return opened.state.stats()


def pick_device(requested: str) -> str:
    """CUDA when torch sees a GPU (auto) or when asked; the CPU otherwise. On CUDA the model
    runs in float32 without TF32, so that its greedy captions can match the ONNX engine's."""
    cuda = torch.cuda.is_available()
    if requested == "cpu" or (requested == "auto" and not cuda):
        return "cpu"
    if not cuda:
        raise WorkerError("no_gpu", "The worker was asked for CUDA, and torch sees no GPU (torch.cuda.is_available() is False).")
    if not hasattr(torch, "set_default_device"):
        raise WorkerError("missing_package", f"Running a bundle on CUDA needs torch 2.0 or later (this is {torch.__version__}); pip install torch==2.7.0, or use device cpu.")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return "cuda"


def fit_frame(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """A frame at the model's size; others are stretched (fit `fill`) with PIL's bilinear filter."""
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


def check_bundle_files(bundle_dir: str) -> None:
    if not os.path.isdir(bundle_dir):
        raise WorkerError("model_files", f"The model bundle directory {bundle_dir} does not exist.")
    try:
        files = read_json(os.path.join(bundle_dir, "casa.json"))["files"]
    except FileNotFoundError:
        raise WorkerError("model_files", f"{bundle_dir} is not a casa-live model bundle: it has no casa.json.") from None
    except (ValueError, KeyError, TypeError) as err:
        raise WorkerError("bad_model", f"{bundle_dir}/casa.json cannot be read ({err}).") from None
    missing = [f for f in files.values() if not os.path.isfile(os.path.join(bundle_dir, f))]
    if missing:
        raise WorkerError("model_files", f"The model bundle {bundle_dir} lacks {', '.join(sorted(missing))}; copy the whole bundle directory.")

"""The `hf` adapter: Kyutai's released CASA checkpoints (or a local Hugging Face directory
holding one), driven through their own remote code the way Kyutai's live-captioning scripts
drive them (kyutai-labs/casa, scripts/live_captioner.py and live_captioner_ui.py):

- AutoConfig / AutoModel / AutoProcessor.from_pretrained(trust_remote_code=True), bfloat16,
  flash_attention_2 on CUDA; frames at 448 px;
- per frame, processor.tokenize_messages(): the first frame carries the (system and) user
  prompt and the assistant opening; later frames are a bare image continuation of one
  never-ended assistant turn (assistant start/end tokens cleared, no BoS);
- model.start_ca_streaming_states(); model.forward(input_ids, pixel_values=[frame],
  past_key_values=DynamicCache, position_ids (3, 1, L) for Qwen, image_embeds_insertion_points,
  pre/post image tokens); one forward per sampled token; the stop token the model sampled is
  recorded in the cache; model.reset_ca_streaming_states().

transformers is imported only here, when such a model is loaded (tests drive this adapter
with a stand-in model: tools/casa_worker/tests/standin.py).
"""
from __future__ import annotations

import glob
import inspect
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .base import FrameStart, OpenedState
from ..context import BoundedContext, Policy, cut_and_rotate, inverse_frequencies
from ..protocol import WorkerError

RELEASED_MODELS = (
    "CASA-Qwen2_5-VL-3B-LiveCC",
    "CASA-Qwen2_5-VL-3B",
    "CASA-Qwen2_5-VL-3B-Shared",
    "CASA-Qwen2_5-VL-3B-Frozen",
    "CASA-Helium1-VL-2B",
    "CASA-Helium1-VL-2B-Shared",
    "Helium1-VL-2B",
)
#: The instructions and opening the released models were tuned with (Kyutai's live captioner).
USER_PROMPT = "Please describe what you see in the video in real-time. Stick to the visual facts. "
QWEN_SYSTEM_PROMPT = ("You are an expert video commentator providing real-time factual and neutral "
                      "commentary on visual content.")
ASSISTANT_OPENING = "In this video"
IMAGE_SIZE = 448
#: Kyutai's live-captioning settings, and a context cap for long-running streams.
DEFAULTS = {
    "fps": 2.0, "maxNewTokensPerFrame": 20, "temperature": 0.4, "topK": 256, "repetitionPenalty": 1.15,
    "repetitionPenaltyDecay": 0.99, "repetitionCountClamp": 5.0, "eosBias": 0.0, "stopBias": 0.95,
    "noRepeatNgramSize": 4, "noRepeatNgramWindow": 60, "maxContextTokens": 8192, "evictChunk": 1024,
}


def resolve_repo(ref: str) -> Tuple[str, bool]:
    """(repo id or directory, is a local directory). A released name alone means kyutai/<name>."""
    if os.path.isdir(ref):
        return ref, True
    org, _, name = ref.rpartition("/")
    if org in ("", "kyutai") and name not in RELEASED_MODELS:
        raise WorkerError("unknown_model", f"Unknown model {ref!r}: the released CASA models are {', '.join(RELEASED_MODELS)}.")
    return (ref if org else f"kyutai/{name}"), False


def check_local_dir(path: str) -> None:
    """A local checkpoint needs its config, its remote code, its weights and its tokenizer."""
    def missing(names: Sequence[str]) -> List[str]:
        return [n for n in names if not os.path.isfile(os.path.join(path, n))]

    try:
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise WorkerError("model_files", f"{path} is not a Hugging Face model directory: it has no config.json.") from None
    except ValueError as err:
        raise WorkerError("bad_model", f"{path}/config.json is not valid JSON ({err}).") from None
    code = sorted({ref.split("--")[-1].split(".")[0] + ".py" for ref in _auto_map_refs(config)})
    lacking = missing(code)
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            lacking += missing(sorted(set(json.load(f).get("weight_map", {}).values())))
    elif not (glob.glob(os.path.join(path, "*.safetensors")) or glob.glob(os.path.join(path, "pytorch_model*.bin"))):
        lacking.append("model weights (*.safetensors)")
    if not any(os.path.isfile(os.path.join(path, n)) for n in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        lacking.append("tokenizer files (tokenizer.json)")
    if lacking:
        raise WorkerError("model_files", f"The model directory {path} lacks {', '.join(lacking)}; download the whole checkpoint again.")


def _auto_map_refs(config: Dict[str, Any]) -> List[str]:
    refs = []
    for value in (config.get("auto_map") or {}).values():
        refs.extend(value if isinstance(value, list) else [value])
    return [r for r in refs if isinstance(r, str)]


def pick_device(requested: str) -> str:
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    if requested == "cpu":
        return "cpu"
    raise WorkerError("no_gpu", "The released CASA models need a CUDA GPU, and torch sees none (torch.cuda.is_available() is "
                      "False); run casa-live on a machine with an NVIDIA GPU, its driver and a CUDA build of torch.")


def load_with_transformers(repo: str, device: str, image_size: int, token: Optional[str]):
    """(model, processor, cache factory) as Kyutai's scripts load them."""
    try:
        from transformers import AutoConfig, AutoModel, AutoProcessor
        from transformers.cache_utils import DynamicCache
    except ImportError:
        raise WorkerError("missing_package", "The worker's Python lacks transformers; install it: pip install transformers==4.51.3 "
                          "(with torch==2.7.0 and flash-attn==2.8.0.post2 on CUDA).") from None
    attn = "flash_attention_2" if device == "cuda" else "sdpa"
    if attn == "flash_attention_2":
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            raise WorkerError("missing_package", "The worker's Python lacks flash-attn; install it: pip install flash-attn==2.8.0.post2.") from None
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = AutoConfig.from_pretrained(repo, trust_remote_code=True, token=token)
    config.torch_dtype = dtype
    if getattr(config, "vision_config", None) is not None:
        config.vision_config.torch_dtype = dtype  # the Helium1 vision tower is built from its own config
    model = AutoModel.from_pretrained(repo, config=config, trust_remote_code=True, torch_dtype=dtype,
                                      attn_implementation=attn, device_map=device, token=token)
    processor = AutoProcessor.from_pretrained(repo, image_size=image_size, trust_remote_code=True, token=token)
    return model.eval(), processor, DynamicCache


def explain_load_failure(err: Exception, repo: str, token: Optional[str]) -> WorkerError:
    kind, text = type(err).__name__, str(err)
    if kind == "GatedRepoError" or "gated" in text.lower() or "401" in text:
        if not token:
            return WorkerError("gated_model", f"{repo} is a gated model: accept its licence on huggingface.co, then set HF_TOKEN to an access token.")
        return WorkerError("gated_model", f"{repo} is gated and the token in HF_TOKEN was refused; check that its account accepted the licence.")
    if kind in ("RepositoryNotFoundError", "RevisionNotFoundError") or "404" in text:
        return WorkerError("unknown_model", f"Hugging Face has no model {repo}; check the name (hf:<org>/<name>).")
    if kind in ("LocalEntryNotFoundError", "ConnectionError", "OfflineModeIsEnabled") or "resolve" in text.lower():
        return WorkerError("model_files", f"{repo} could not be downloaded ({text.splitlines()[0] if text else kind}); check the network or give a local directory.")
    return WorkerError("bad_model", f"{repo} could not be loaded: {text.splitlines()[0] if text else kind}.")


class HfState:
    """One session: its DynamicCache (capped), its frame count and position bookkeeping."""

    def __init__(self, adapter: "HfAdapter", prompt: str, options: Dict):
        self.adapter = adapter
        self.cache = adapter.new_cache()
        self.prompt = prompt
        self.sink: Optional[int] = options.get("sinkTokens")
        cap = options["maxContextTokens"]
        self.context = BoundedContext(Policy(math.inf if cap is None else cap, self.sink or 0, options["evictChunk"]), self)
        self.frames = 0
        self.fed = 0
        self.forwards = 0
        self.model_ms = 0.0
        self.image_growth = 0

    # ---------------------------------------------------------------- KvStore over the DynamicCache
    def length(self) -> int:
        keys = getattr(self.cache, "key_cache", [])
        return int(keys[0].shape[-2]) if keys else 0

    def evict(self, start: int, count: int) -> None:
        keys, values = self.cache.key_cache, self.cache.value_cache
        if len({int(k.shape[-2]) for k in keys}) != 1:
            raise WorkerError("internal", "the model's cache layers differ in length; cannot bound its context (set maxContextTokens: null)")
        for i in range(len(keys)):
            keys[i] = cut_and_rotate(keys[i], start, count, keys[i].dim() - 2, self.adapter.inv_freq)
            values[i] = cut_and_rotate(values[i], start, count, values[i].dim() - 2, None)
        if hasattr(self.cache, "_seen_tokens"):
            self.cache._seen_tokens = self.length()

    def stats(self) -> Dict[str, float]:
        length = self.length()
        image = self.context.image_tokens
        kv_bytes = sum(t.numel() * t.element_size() for t in list(getattr(self.cache, "key_cache", [])) + list(getattr(self.cache, "value_cache", [])))
        return {
            "kvTokens": length, "textKvTokens": length - image, "imageKvTokens": image, "windowTokens": 0,
            "imageTokens": 0, "nextPosition": length, "evictions": self.context.evictions,
            "evictedTokens": self.context.evicted_tokens, "kvBytes": kv_bytes, "kvCapacityBytes": kv_bytes,
            "textTokensFed": self.fed, "modelMs": self.model_ms, "forwards": self.forwards,
        }


class HfAdapter:
    name = "hf"

    def __init__(self, ref: str, device: str, log: Callable[[str], None], image_size: int = IMAGE_SIZE,
                 loader: Callable = load_with_transformers, env: Optional[Dict[str, str]] = None):
        env = os.environ if env is None else env
        repo, local = resolve_repo(ref)
        if local:
            check_local_dir(repo)
        self.device = pick_device(device)
        token = env.get("HF_TOKEN") or env.get("HUGGINGFACE_TOKEN") or None
        try:
            self.model, self.processor, self.new_cache = loader(repo, self.device, image_size, token)
        except WorkerError:
            raise
        except Exception as err:  # transformers / huggingface_hub raise many kinds
            raise explain_load_failure(err, repo, token) from None
        self.repo = repo
        self.image_size = image_size
        config = self.model.config
        text = getattr(config, "text_config", None) or config
        self.is_qwen = "qwen" in repo.lower() or "qwen" in str(getattr(config, "model_type", "")).lower()
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]
        heads = int(text.num_attention_heads)
        head_dim = int(getattr(text, "head_dim", 0) or text.hidden_size // heads)
        self.inv_freq = inverse_frequencies(head_dim, float(getattr(text, "rope_theta", 10000.0)))
        self.vocab_size = int(getattr(text, "vocab_size", 0) or 0)
        self.asst_start = list(getattr(self.processor, "asst_start_tokens", []) or [])
        self.processor.asst_end_tokens = []  # the stream is one never-ended assistant turn
        self.suppress_bos_kw = "suppress_bos_token" in inspect.signature(self.processor.tokenize_messages).parameters
        self.pre_image = list(config.pre_image_tokens)
        self.post_image = list(config.post_image_tokens)
        self.dtype = next(self.model.parameters()).dtype
        self.prompt_tokens = int(self.tokenize(0, USER_PROMPT)["input_ids"].shape[1])
        log(f"hf adapter: {repo} on {self.device} ({self.dtype}), stop ids {self.stop_ids}, {'Qwen M-RoPE' if self.is_qwen else '1-D'} positions")

    def info(self) -> Dict:
        name = self.repo.rstrip("/").split("/")[-1]
        return {
            "name": name, "adapter": self.name, "fusion": "insertion" if name.startswith("Helium1-VL") else "casa",
            "image": {"width": self.image_size, "height": self.image_size, "fit": "fill", "tokensPerFrame": 0},
            "fps": DEFAULTS["fps"], "stopIds": self.stop_ids, "device": self.device, "dtype": str(self.dtype).replace("torch.", ""),
            "acceptsPrompt": True, "promptTokens": self.prompt_tokens, "frameOpeningTokens": 0, "vocabSize": self.vocab_size,
            "defaults": {**DEFAULTS, "penaltyIgnore": list(self.stop_ids)},
        }

    def decode(self, ids: Sequence[int]) -> str:
        return self.processor.tokenizer.decode(list(ids), skip_special_tokens=True)

    # ---------------------------------------------------------------- messages
    def tokenize(self, frame: int, prompt: str) -> Dict[str, Any]:
        """The frame's messages: the first carries the prompts and the opening, later ones an image only."""
        if frame == 0:
            self.processor.asst_start_tokens = list(self.asst_start)
            messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]},
                        {"role": "assistant", "content": [{"type": "image", "image": None}, {"type": "text", "text": ASSISTANT_OPENING}]}]
            if self.is_qwen:
                messages.insert(0, {"role": "system", "content": [{"type": "text", "text": QWEN_SYSTEM_PROMPT}]})
        else:
            self.processor.asst_start_tokens = []
            messages = [{"role": "assistant", "content": [{"type": "image", "image": None}]}]
        continuation = frame > 0 and not self.is_qwen
        if self.suppress_bos_kw:
            inputs = self.processor.tokenize_messages(messages, suppress_bos_token=continuation)
        else:
            inputs = self.processor.tokenize_messages(messages)
            if continuation:  # drop the BoS, and move the insertion points with it
                inputs["input_ids"] = inputs["input_ids"][:, 1:]
                points = inputs.get("image_embeds_insertion_points")
                if points is not None:
                    inputs["image_embeds_insertion_points"] = [p - 1 for p in points]
        if inputs is None:
            raise WorkerError("internal", "the processor could not tokenize the frame's messages")
        return inputs

    def positions(self, start: int, length: int) -> torch.Tensor:
        pos = torch.arange(start, start + length, dtype=torch.long, device=self.device)
        return pos.view(1, 1, length).expand(3, 1, length).contiguous() if self.is_qwen else pos.unsqueeze(0)

    def pixels(self, rgb: np.ndarray) -> List[torch.Tensor]:
        frames = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None]
        return list(self.processor._image_processor.process_images(frames).to(self.device, self.dtype))

    # ---------------------------------------------------------------- session protocol
    def open(self, prompt: Optional[str], options: Dict) -> OpenedState:
        return OpenedState(HfState(self, USER_PROMPT if prompt is None else prompt, options), [])

    @torch.no_grad()
    def start_frame(self, opened: OpenedState, rgb: np.ndarray) -> FrameStart:
        s: HfState = opened.state
        inputs = self.tokenize(s.frames, s.prompt)
        input_ids = inputs["input_ids"].to(self.device)
        n = int(input_ids.shape[1])
        if s.frames == 0 and s.sink is None:
            s.context.policy.sink = n
        s.context.ensure_room(n + s.image_growth, True)
        s.context.mark_frame_start()
        points = inputs.get("image_embeds_insertion_points")
        if points is not None:
            points = [p.to(self.device) for p in points]
        past = s.length()
        t0 = time.perf_counter()
        self.model.start_ca_streaming_states()
        out = self.model.forward(
            input_ids, pixel_values=self.pixels(rgb), past_key_values=s.cache, use_cache=True,
            attention_mask=torch.ones((1, past + n), device=self.device), position_ids=self.positions(past, n),
            image_embeds_insertion_points=points, pre_image_tokens=self.pre_image, post_image_tokens=self.post_image)
        s.image_growth = max(0, s.length() - past - n)
        if s.image_growth:
            s.context.mark_image_tokens(s.image_growth)
        self._charge(s, t0, n)
        s.frames += 1
        return FrameStart(out.logits[0, -1], input_ids[0].tolist())

    @torch.no_grad()
    def feed(self, opened: OpenedState, ids: Sequence[int]) -> torch.Tensor:
        s: HfState = opened.state
        s.context.ensure_room(len(ids), False)
        past = s.length()
        t0 = time.perf_counter()
        token_ids = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        out = self.model.forward(
            token_ids, pixel_values=None, past_key_values=s.cache, use_cache=True,
            attention_mask=torch.ones((1, len(ids)), device=self.device), position_ids=self.positions(past, len(ids)),
            **{"__is_first_gen_call__": False})
        self._charge(s, t0, len(ids))
        return out.logits[0, -1]

    def end_frame(self, opened: OpenedState) -> None:
        self.model.reset_ca_streaming_states()

    def stats(self, opened: OpenedState) -> Dict[str, float]:
        return opened.state.stats()

    @staticmethod
    def _charge(s: HfState, t0: float, tokens: int) -> None:
        s.forwards += 1
        s.fed += tokens
        s.model_ms += (time.perf_counter() - t0) * 1000

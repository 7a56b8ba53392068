"""A STAND-IN for the released CASA checkpoints' Hugging Face remote code.

The real modelling code ships next to Kyutai's weights (trust_remote_code) and cannot be
fetched here (no internet, no transformers), so the `hf` adapter is tested on this small
stand-in: it exposes the same entry points the adapter calls — AutoModel-like
`start_ca_streaming_states`, `forward(input_ids, pixel_values=[frame], past_key_values,
position_ids, image_embeds_insertion_points, pre/post_image_tokens, __is_first_gen_call__)`,
`reset_ca_streaming_states`, `config`, `generation_config.eos_token_id` (a list); an
AutoProcessor-like `tokenize_messages`, `asst_start_tokens` / `asst_end_tokens`,
`tokenizer.decode`, `_image_processor.process_images`; and a DynamicCache-like cache —
over casa-tiny's PyTorch model. It records every call, and checks what the real code
relies on (CA state started before an image forward, positions contiguous with the cache).

casa-tiny's prompt is fixed by training, so the stand-in processor records the messages it
is given (the adapter's system / user prompt and assistant opening) and tokenizes the first
frame's as casa-tiny's own prompt; its image insertion point is the pre-image marker, which
starts the frame's CASA window. Greedy captions through it therefore equal those of the
torch adapter (and of the ONNX engine).
"""
from __future__ import annotations

import types
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from tools.casa_worker.adapters.torch_bundle import normalise


class StandinCache:
    """transformers' DynamicCache as the adapter uses it: per-layer key/value lists, _seen_tokens."""

    def __init__(self):
        self.key_cache: List[torch.Tensor] = []
        self.value_cache: List[torch.Tensor] = []
        self._seen_tokens = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.key_cache[layer_idx].shape[-2]) if self.key_cache else 0


class StandinTokenizer:
    def __init__(self, tok):
        self.tok = tok

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tok.decode(list(ids))


class StandinImageProcessor:
    def __init__(self, manifest: Dict):
        self.image = manifest["image"]
        self.calls = 0

    def process_images(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] → normalised float [N, 3, S, S] (frames arrive at casa-tiny's size here)."""
        self.calls += 1
        rgb = frames.permute(0, 2, 3, 1).numpy()
        return torch.cat([normalise(np.ascontiguousarray(f), self.image["mean"], self.image["std"]) for f in rgb])


class StandinProcessor:
    def __init__(self, tok, manifest: Dict, bos: Optional[int], with_suppress_kw: bool):
        self.tok = tok
        self.tokenizer = StandinTokenizer(tok)
        self._image_processor = StandinImageProcessor(manifest)
        prompt = manifest["prompt"]["text"]
        opening = "<|im_start|>assistant\n"
        assert prompt.endswith(opening)
        self.system_user = tok.encode(prompt[: -len(opening)])
        self.asst_start_tokens = tok.encode(opening)
        self.asst_end_tokens = [tok.token_id("<|im_end|>")]
        self.markers = [manifest["tokens"]["preImage"], manifest["tokens"]["postImage"]]
        self.bos = bos
        self.messages: List[List[Dict]] = []
        self.asst_start_seen: List[List[int]] = []
        if not with_suppress_kw:  # the older signature: the adapter must slice the BoS off itself
            self.tokenize_messages = self._tokenize_without_kw  # type: ignore[method-assign]

    def tokenize_messages(self, messages, suppress_bos_token: bool = False):
        return self._tokenize(messages, suppress_bos_token)

    def _tokenize_without_kw(self, messages):
        return self._tokenize(messages, False)

    def _tokenize(self, messages, suppress_bos: bool):
        self.messages.append(messages)
        self.asst_start_seen.append(list(self.asst_start_tokens))
        first = any(m["role"] in ("system", "user") for m in messages)
        ids = ([] if self.bos is None or suppress_bos else [self.bos]) + (self.system_user if first else [])
        ids = ids + list(self.asst_start_tokens)
        point = len(ids)
        ids = ids + self.markers
        return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids)),
                "image_embeds_insertion_points": [torch.tensor(point)]}


class StandinModel(torch.nn.Module):
    def __init__(self, casa, manifest: Dict, stop_ids: List[int], qwen: bool):
        super().__init__()
        self.casa = casa
        self.qwen = qwen
        cfg = casa.cfg
        self.config = types.SimpleNamespace(
            model_type="casa_qwen2_5_vl_standin" if qwen else "casa_helium1_standin",
            pre_image_tokens=[manifest["tokens"]["preImage"]], post_image_tokens=[manifest["tokens"]["postImage"]],
            num_attention_heads=cfg.heads, hidden_size=cfg.hidden, head_dim=cfg.head_dim, rope_theta=cfg.rope_theta,
            vocab_size=cfg.vocab_size)
        self.generation_config = types.SimpleNamespace(eos_token_id=list(stop_ids))
        self.calls: List[Dict[str, Any]] = []
        self.ca_active = False
        self._reset_window()

    def _reset_window(self):
        cfg = self.casa.cfg
        c = len(cfg.active_casa_layers)
        self.img_k = torch.zeros(c, 1, cfg.kv_heads, 0, cfg.head_dim)
        self.img_v = torch.zeros_like(self.img_k)
        self.win_k = torch.zeros(c, 1, cfg.kv_heads, 0, cfg.head_dim)
        self.win_v = torch.zeros_like(self.win_k)

    def start_ca_streaming_states(self):
        assert not self.ca_active, "start_ca_streaming_states called twice without a reset"
        self.calls.append({"call": "start"})
        self.ca_active = True

    def reset_ca_streaming_states(self):
        self.calls.append({"call": "reset"})
        self.ca_active = False
        self._reset_window()

    @torch.no_grad()
    def forward(self, input_ids, pixel_values=None, past_key_values=None, use_cache=True, attention_mask=None,
                position_ids=None, image_embeds_insertion_points=None, pre_image_tokens=None, post_image_tokens=None, **kw):
        cache: StandinCache = past_key_values
        past = cache.get_seq_length()
        ids = input_ids[0].tolist()
        self._check_positions(position_ids, past, len(ids))
        call = {"call": "forward", "ids": ids, "image": pixel_values is not None, "past": past,
                "first_gen_call": kw.get("__is_first_gen_call__", True), "mask": tuple(attention_mask.shape)}
        self.calls.append(call)
        assert self.ca_active, "forward outside start_ca_streaming_states / reset_ca_streaming_states"
        if pixel_values is None:
            return types.SimpleNamespace(logits=self._feed(cache, ids))
        assert isinstance(pixel_values, list) and len(pixel_values) == 1, "one frame per forward, as a list"
        assert pre_image_tokens == self.config.pre_image_tokens and post_image_tokens == self.config.post_image_tokens
        point = int(image_embeds_insertion_points[0])
        before = self._feed(cache, ids[:point]) if point > 0 else None  # the previous window (frame 0: the prompt's)
        embeds = self.casa.vision(pixel_values[0][None].float())
        self.img_k, self.img_v = self.casa.casa_kv(embeds)  # the frame's window starts at its pre-image marker
        self.win_k, self.win_v = self.win_k[:, :, :, :0], self.win_v[:, :, :, :0]
        after = self._feed(cache, ids[point:])
        return types.SimpleNamespace(logits=after if before is None else torch.cat([before, after], 1))

    def _check_positions(self, position_ids, past: int, n: int):
        want = torch.arange(past, past + n)
        if self.qwen:
            assert tuple(position_ids.shape) == (3, 1, n), f"Qwen positions are (3, 1, L), got {tuple(position_ids.shape)}"
            assert all(torch.equal(position_ids[r, 0], want) for r in range(3)), "M-RoPE rows must be equal and contiguous"
        else:
            assert tuple(position_ids.shape) == (1, n) and torch.equal(position_ids[0], want), "positions must be contiguous"

    def _feed(self, cache: StandinCache, ids: List[int]) -> torch.Tensor:
        cfg = self.casa.cfg
        p = cache.get_seq_length()
        if cache.key_cache:
            past_k, past_v = torch.stack(cache.key_cache), torch.stack(cache.value_cache)
        else:
            past_k = torch.zeros(cfg.layers, 1, cfg.kv_heads, 0, cfg.head_dim)
            past_v = torch.zeros_like(past_k)
        w = int(self.win_k.shape[3])
        logits, nk, nv, nwk, nwv = self.casa.decoder_step(
            torch.tensor([ids]), torch.arange(p, p + len(ids))[None], torch.arange(w + 1, w + len(ids) + 1)[None],
            past_k, past_v, self.img_k, self.img_v, self.win_k, self.win_v)
        self.win_k, self.win_v = torch.cat([self.win_k, nwk], 3), torch.cat([self.win_v, nwv], 3)
        merged_k, merged_v = torch.cat([past_k, nk], 3), torch.cat([past_v, nv], 3)
        cache.key_cache = [merged_k[i] for i in range(cfg.layers)]
        cache.value_cache = [merged_v[i] for i in range(cfg.layers)]
        cache._seen_tokens += len(ids)
        return logits


def standin_loader(torch_adapter, qwen: bool = True, extra_stop: Optional[int] = None, with_suppress_kw: bool = True):
    """A loader for HfAdapter(loader=…): (model, processor, cache factory) over casa-tiny."""
    m = torch_adapter.manifest
    stops = [m["tokens"]["eos"]] + ([extra_stop] if extra_stop is not None else [])
    bos = None if qwen else torch_adapter.tokenizer.token_id("<|pad|>")

    def load(repo, device, image_size, token):
        model = StandinModel(torch_adapter.model, m, stops, qwen)
        return model, StandinProcessor(torch_adapter.tokenizer, m, bos, with_suppress_kw), StandinCache

    return load

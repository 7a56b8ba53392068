"""The casa-tiny model: a Qwen2-style decoder with CASA sublayers, a small vision encoder,
and the insertion twin.

Two computation paths share the same weights:
- `forward_packed`: training / reference. A whole clip at once; CASA layers score each
  window on its own (queries = window-j text; keys = [image_j ; text_j], causal in text).
- `vision` / `casa_kv` / `decoder_step`: streaming. One call per chunk of tokens with
  explicit caches; this is what is exported to ONNX. Tests check both paths agree.

Positions: self-attention uses consecutive text positions (images take none); CASA
layers use window-relative positions (image keys at 0, the window's text at 1, 2, …).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG = -1e9
# The streaming paths' (batch, tokens) as export-friendly ints: batch 1, tokens dynamic.
STREAM = (1, -1)
_ZERO = torch.tensor(0.0)
_NEG = torch.tensor(NEG)


def additive(allowed: torch.Tensor) -> torch.Tensor:
    """Boolean mask → float32 additive mask (0 where allowed, a large negative elsewhere)."""
    return torch.where(allowed, _ZERO, _NEG)


@dataclasses.dataclass
class ModelConfig:
    fusion: str = "casa"  # casa | insertion
    vocab_size: int = 342
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 32
    ffn: int = 384
    casa_layers: Tuple[int, ...] = (0, 1, 2, 3)
    casa_window_text: bool = True  # False: plain cross-attention ablation (image keys only)
    rope_theta: float = 10000.0
    image_size: int = 64
    patch: int = 8
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    merge: int = 2  # 2x2 neighbouring patches merged into one image token (as Qwen2.5-VL does)
    rms_eps: float = 1e-6

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch // self.merge) ** 2

    @property
    def active_casa_layers(self) -> Tuple[int, ...]:
        return tuple(self.casa_layers) if self.fusion == "casa" else ()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float):
    """positions [..., T] → cos, sin [..., T, head_dim] (Qwen2 / rotate-half layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = positions.to(torch.float32).unsqueeze(-1) * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x, half: int):
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x, cos, sin, head_dim: int):
    """x [B, H, T, D]; cos/sin [B, T, D]. Sizes are Python ints from the config, never read
    from tensors: in an exported graph a tensor's size is a chain of Shape ops per use."""
    return x * cos.unsqueeze(1) + rotate_half(x, head_dim // 2) * sin.unsqueeze(1)


def _causal_tail_mask(query_idx, keys: int, t: int):
    """Additive mask [T, keys] for T new queries that are the last T of `keys` keys: query i
    sees every key up to keys - t + i."""
    key_idx = torch.arange(keys)[None, :]
    return additive(key_idx <= query_idx + (keys - t))


def attend_packed(q, k, v, mask_add, cfg: "ModelConfig"):
    """Training attention without repeating K/V: the G query heads sharing a KV head are
    stacked along the query axis, and scale + mask fold into one batched matmul (baddbmm).
    q [B,H,T,D], k/v [B,KVH,S,D]; mask_add [G*T,S] (shared) or [B*KVH,G*T,S], rows
    ordered (head in group, token). Returns [B,H,T,D]."""
    b, _, t, d = q.shape
    kvh, g = cfg.kv_heads, cfg.heads // cfg.kv_heads
    scores = torch.baddbmm(mask_add, q.reshape(b * kvh, g * t, d), k.reshape(b * kvh, -1, d).transpose(1, 2),
                           alpha=1.0 / math.sqrt(d))
    out = torch.bmm(torch.softmax(scores, dim=-1), v.reshape(b * kvh, -1, d))
    return out.reshape(b, cfg.heads, t, d)


def causal_chunks(s: int, cfg: "ModelConfig", chunk: int = 160):
    """The query chunks of `attend_causal_chunked` for a length-`s` sequence, each with its
    additive mask; built once per forward pass and shared by every layer."""
    g = cfg.heads // cfg.kv_heads
    chunks = []
    for a in range(0, s, chunk):
        b = min(s, a + chunk)
        chunks.append((a, b, _causal_tail_mask(torch.arange(b - a)[:, None], b, b - a).repeat(g, 1)))
    return chunks


def attend_causal_chunked(q, k, v, chunks, cfg: "ModelConfig"):
    """Causal training attention that skips the masked upper triangle: queries go in chunks,
    and chunk [a, b) scores only the keys [0, b). For the insertion twin's ~600-token
    sequences this halves a training step on CPU (less work, and score tensors that stay
    in cache). q [B,H,S,D], k/v [B,KVH,S,D]; chunks from `causal_chunks`."""
    return torch.cat([attend_packed(q[:, :, a:b], k[:, :, :b], v[:, :, :b], mask, cfg) for a, b, mask in chunks], dim=2)


def attend_grouped(q, k, v, mask_add, cfg: "ModelConfig", rows: int = 1):
    """Streaming attention without repeating K/V: the G query heads that share a KV head are
    stacked along the query axis. q [B,H,T,D], k/v [B,KVH,S,D]; mask_add broadcasts to
    [B,KVH,G*T,S], rows ordered (head in group, token). B is `rows`, an int (or, in an
    exported graph, a size read once from an input)."""
    qg = q.reshape(rows, cfg.kv_heads, -1, cfg.head_dim)
    scores = torch.matmul(qg, k.transpose(-1, -2)) * (1.0 / math.sqrt(cfg.head_dim)) + mask_add
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    return out.reshape(rows, cfg.heads, -1, cfg.head_dim)


def ragged_valid(lengths, size):
    """bool [B, size]: True for the first lengths[b] entries of row b (the rest is padding)."""
    return torch.arange(size)[None, :] < lengths[:, None]


def grouped_causal_mask(t: int, g: int):
    """Additive [1,1,G*T,T]: T new tokens see themselves and the new tokens before them."""
    idx = torch.arange(t)
    return additive(idx[None, :] <= idx[:, None]).repeat(g, 1)[None, None]


def ragged_step_mask(valid, causal, rows):
    """Additive [B,1,G*T,S+T] of a batched step: each row's valid cached keys (valid [B,S]),
    then the new tokens causally (`causal` from grouped_causal_mask)."""
    return torch.cat([additive(valid)[:, None, None, :].expand(-1, -1, causal.shape[2], -1),
                      causal.expand(rows, -1, -1, -1)], dim=-1)


@dataclasses.dataclass
class CasaWindows:
    """Where each text token of a packed batch sits in its CASA window, for
    `attend_casa_windows`. The prompt (window 0, the same tokens at the head of every
    sequence) is `prompt` tokens long; frame window j (1..M) is gathered into row j-1 of
    [M, L] slots."""
    prompt: int
    prompt_mask: torch.Tensor  # [G*P, P] additive
    slots: torch.Tensor  # [B, M*L] token index of each slot (0 for an empty slot)
    slot_of: torch.Tensor  # [B, T] flat slot of each frame-window token (0 elsewhere)
    mask: torch.Tensor  # [B*KVH*M, G*L, N+L] additive: image j, then window-j text up to the query


def casa_windows(win: torch.Tensor, m: int, cfg: "ModelConfig") -> CasaWindows:
    """win [B,T] (0 = prompt, j = frame j, -1 = padding; each window contiguous)."""
    b, t = win.shape
    g, kvh, n = cfg.heads // cfg.kv_heads, cfg.kv_heads, cfg.image_tokens
    prompt = int((win[0] == 0).sum())
    if not bool((win[:, :prompt] == 0).all()) or bool((win[:, prompt:] == 0).any()):
        raise ValueError("every sequence must open with the same prompt window")
    in_frame = win > 0
    member = win[:, :, None] == torch.arange(1, m + 1)[None, None, :]  # [B,T,M]
    slot = (member.cumsum(1) - 1).gather(2, (win - 1).clamp(min=0)[:, :, None])[:, :, 0]  # [B,T]
    length = max(1, int(member.sum(1).max()))
    bi, ti = in_frame.nonzero(as_tuple=True)
    flat = (win[bi, ti] - 1) * length + slot[bi, ti]
    slots = torch.zeros(b, m * length, dtype=torch.long)
    slots[bi, flat] = ti
    filled = torch.zeros(b, m * length, dtype=torch.bool)
    filled[bi, flat] = True
    slot_of = torch.zeros(b, t, dtype=torch.long)
    slot_of[bi, ti] = flat
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    see_txt = filled.reshape(b, m, 1, length) & causal
    if not cfg.casa_window_text:  # plain cross-attention ablation: image keys only
        see_txt = torch.zeros_like(see_txt)
    see = torch.cat([torch.ones(b, m, length, n, dtype=torch.bool), see_txt], dim=-1)  # [B,M,L,N+L]
    mask = additive(see)[:, None, :, None].expand(b, kvh, m, g, length, n + length)
    prompt_see = torch.ones(prompt, prompt, dtype=torch.bool).tril()
    if not cfg.casa_window_text:  # a query without an image sees itself
        prompt_see = torch.eye(prompt, dtype=torch.bool)
    return CasaWindows(prompt, additive(prompt_see).repeat(g, 1), slots, slot_of,
                       mask.reshape(b * kvh * m, g * length, n + length))


def attend_casa_windows(q, k, v, ik, iv, w: CasaWindows, cfg: "ModelConfig"):
    """Training CASA attention window by window: a text query of window j sees image j's
    tokens and the window-j text up to itself, prompt queries the prompt causally. Scoring
    each window alone (rather than all text against every image with a block-diagonal mask)
    computes ~M times fewer scores. q [B,H,T,D]; k/v [B,KVH,T,D]; ik/iv [B,KVH,M,N,D]."""
    b, h, t, d = q.shape
    kvh, g = cfg.kv_heads, cfg.heads // cfg.kv_heads
    m, n = ik.shape[2], ik.shape[3]
    length = w.slots.shape[1] // m
    p = w.prompt
    prompt_out = attend_packed(q[:, :, :p], k[:, :, :p], v[:, :, :p], w.prompt_mask, cfg)

    def gather(x, heads):
        return x.gather(2, w.slots[:, None, :, None].expand(b, heads, m * length, d))

    qw = gather(q, h).reshape(b, kvh, g, m, length, d).transpose(2, 3).reshape(b * kvh * m, g * length, d)
    kw = torch.cat([ik, gather(k, kvh).reshape(b, kvh, m, length, d)], dim=3).reshape(b * kvh * m, n + length, d)
    vw = torch.cat([iv, gather(v, kvh).reshape(b, kvh, m, length, d)], dim=3).reshape(b * kvh * m, n + length, d)
    scores = torch.baddbmm(w.mask, qw, kw.transpose(1, 2), alpha=1.0 / math.sqrt(d))
    out = torch.bmm(torch.softmax(scores, dim=-1), vw)  # [B*KVH*M, G*L, D]
    out = out.reshape(b, kvh, m, g, length, d).transpose(2, 3).reshape(b, h, m * length, d)
    frame_out = out.gather(2, w.slot_of[:, None, :, None].expand(b, h, t, d))
    return torch.cat([prompt_out, frame_out[:, :, p:]], dim=2)  # padding rows: don't-care values


class Attention(nn.Module):
    """Grouped-query attention projections (shared by self-attention and CASA sublayers)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.q = nn.Linear(cfg.hidden, cfg.heads * cfg.head_dim, bias=True)
        self.k = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=True)
        self.v = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=True)
        self.o = nn.Linear(cfg.heads * cfg.head_dim, cfg.hidden, bias=False)

    def split(self, x, proj, heads, lead=None):
        """[B, T, C] → [B, heads, T, Dh]. `lead` gives (B, T) as ints, one of them -1, for
        export (the streaming paths pass (1, -1) or (-1, image tokens))."""
        lead = tuple(x.shape[:2]) if lead is None else lead
        return proj(x).view(*lead, heads, self.cfg.head_dim).transpose(1, 2)

    def qkv(self, x, cos, sin, lead=None):
        hd = self.cfg.head_dim
        q = apply_rope(self.split(x, self.q, self.cfg.heads, lead), cos, sin, hd)
        k = apply_rope(self.split(x, self.k, self.cfg.kv_heads, lead), cos, sin, hd)
        v = self.split(x, self.v, self.cfg.kv_heads, lead)
        return q, k, v

    def out(self, attn, lead=None):
        b, h, t, d = attn.shape if lead is None else (lead[0], self.cfg.heads, lead[1], self.cfg.head_dim)
        return self.o(attn.transpose(1, 2).reshape(b, t, h * d))

    def mix(self, x, cos, sin, attend, lead=None):
        """The sublayer's output for the normed input x: projections, rotary positions, then
        `attend(q, k, v)` (the part that differs between the packed and streaming paths)."""
        return self.out(attend(*self.qkv(x, cos, sin, lead)), lead)


class CasaSublayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden, cfg.rms_eps)
        self.image_norm = RMSNorm(cfg.hidden, cfg.rms_eps)
        self.attn = Attention(cfg)

    def image_kv(self, image_embeds):
        """image_embeds [F, N, D] → k, v [F, KVH, N, Dh]; image keys sit at window position 0 (no rotation)."""
        x = self.image_norm(image_embeds)
        lead = (-1, self.attn.cfg.image_tokens)
        return (self.attn.split(x, self.attn.k, self.attn.cfg.kv_heads, lead),
                self.attn.split(x, self.attn.v, self.attn.cfg.kv_heads, lead))

    def mix(self, x, cos, sin, attend, lead=None):
        """As Attention.mix, with this sublayer's projections (x: the CASA-normed input)."""
        return self.attn.mix(x, cos, sin, attend, lead)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.hidden, cfg.ffn, bias=False)
        self.up = nn.Linear(cfg.hidden, cfg.ffn, bias=False)
        self.down = nn.Linear(cfg.ffn, cfg.hidden, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, casa: bool):
        super().__init__()
        self.norm1 = RMSNorm(cfg.hidden, cfg.rms_eps)
        self.self_attn = Attention(cfg)
        self.casa = CasaSublayer(cfg) if casa else None
        self.norm2 = RMSNorm(cfg.hidden, cfg.rms_eps)
        self.mlp = MLP(cfg)

    def forward(self, h, self_mix, casa_mix=None):
        """The block's residual stream: h + self-attention (+ CASA, in a CASA block) + MLP,
        each sublayer on its pre-normed input. The attention differs per path (packed
        training, streaming over caches), so the caller passes it: `self_mix(attn, x)` and
        `casa_mix(casa_sublayer, x)` return the sublayer's output for the normed x."""
        h = h + self_mix(self.self_attn, self.norm1(h))
        if self.casa is not None:
            h = h + casa_mix(self.casa, self.casa.norm(h))
        return h + self.mlp(self.norm2(h))


class StepAttention:
    """Attention of one streaming step for block `i`: the new tokens attend to the block's
    cached keys and values (`cached_keys[j][i]` for each stacked cache j, in order) followed
    by their own, under `mask` (broadcast to [B,KVH,G*T,S]); the new keys and values are
    kept, block by block, for the caller to return. `lead` is (B, T) as ints for export."""

    def __init__(self, cfg: "ModelConfig", cos, sin, mask, cached_keys, cached_values, lead=STREAM):
        self.cfg, self.cos, self.sin, self.mask, self.lead = cfg, cos, sin, mask, lead
        self.cached_keys, self.cached_values = cached_keys, cached_values
        self.new_keys: List[torch.Tensor] = []
        self.new_values: List[torch.Tensor] = []

    def __call__(self, i: int, sublayer, x):
        return sublayer.mix(x, self.cos, self.sin, functools.partial(self.attend, i), self.lead)

    def attend(self, i: int, q, k, v):
        self.new_keys.append(k)
        self.new_values.append(v)
        kk, vv, mask = self.context(i, k, v)
        return attend_grouped(q, kk, vv, mask, self.cfg, self.lead[0])

    def context(self, i: int, k, v):
        """Keys, values and mask the new tokens attend over."""
        kk = torch.cat([c[i] for c in self.cached_keys] + [k], dim=2)
        vv = torch.cat([c[i] for c in self.cached_values] + [v], dim=2)
        return kk, vv, self.mask

    def stacked(self, t: int):
        """new keys, values [blocks, B, KVH, T, Dh] (empty when no block attended)."""
        stack = lambda xs: torch.stack(xs) if xs else torch.zeros(0, 1, self.cfg.kv_heads, t, self.cfg.head_dim)
        return stack(self.new_keys), stack(self.new_values)


class SplitStepAttention(StepAttention):
    """Self-attention of a batched step (format version 2) over [past ; new] without
    concatenating the cache: the new tokens' scores against the past keys and against their
    own keys share one softmax, and the two value products are summed. The same function as
    StepAttention's, but a run no longer copies every row's whole cache (at 64 rows of ~200
    tokens the copies were a fifth of the decoder's time). `past_mask` broadcasts to
    [B,KVH,G*T,P] (the ragged lengths), `causal` to [B,KVH,G*T,T]."""

    def __init__(self, cfg: "ModelConfig", cos, sin, past_mask, causal, cached_keys, cached_values, lead):
        super().__init__(cfg, cos, sin, None, cached_keys, cached_values, lead)
        self.past_mask, self.causal = past_mask, causal

    def attend(self, i: int, q, k, v):
        self.new_keys.append(k)
        self.new_values.append(v)
        cfg, rows = self.cfg, self.lead[0]
        past_k, past_v = self.cached_keys[0][i], self.cached_values[0][i]
        qg = q.reshape(rows, cfg.kv_heads, -1, cfg.head_dim) * (1.0 / math.sqrt(cfg.head_dim))
        past_scores = torch.matmul(qg, past_k.transpose(-1, -2)) + self.past_mask
        new_scores = torch.matmul(qg, k.transpose(-1, -2)) + self.causal
        probs = torch.softmax(torch.cat([past_scores, new_scores], dim=-1), dim=-1)
        p = past_k.shape[2]
        out = torch.matmul(probs[..., :p], past_v) + torch.matmul(probs[..., p:], v)
        return out.reshape(rows, cfg.heads, -1, cfg.head_dim)


class ImageOnlyStepAttention(StepAttention):
    """The plain cross-attention ablation's CASA step (PyTorch only, not exported): the text
    attends to the image keys only (`cached_keys` = (image keys,)); in a window without an
    image (the prompt) each token sees itself."""

    def context(self, i: int, k, v):
        image_k, image_v = self.cached_keys[0][i], self.cached_values[0][i]
        t, n = k.shape[2], image_k.shape[2]
        g = self.cfg.heads // self.cfg.kv_heads
        if n > 0:
            return image_k, image_v, torch.zeros(g * t, n)
        return k, v, additive(torch.eye(t, dtype=torch.bool)).repeat(g, 1)


class VisionBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.vision_hidden
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, cfg.vision_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class VisionEncoder(nn.Module):
    """Patches with learned 2-D (row + column) positions, a few transformer blocks, and a
    connector to the decoder width."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        g = cfg.image_size // cfg.patch
        self.grid = g
        self.patch = nn.Conv2d(3, cfg.vision_hidden, cfg.patch, cfg.patch)
        self.row = nn.Parameter(torch.randn(g, cfg.vision_hidden) * 0.02)
        self.col = nn.Parameter(torch.randn(g, cfg.vision_hidden) * 0.02)
        self.blocks = nn.ModuleList([VisionBlock(cfg) for _ in range(cfg.vision_layers)])
        self.norm = nn.LayerNorm(cfg.vision_hidden)
        self.merge = cfg.merge
        merged = cfg.vision_hidden * cfg.merge * cfg.merge
        self.connector = nn.Sequential(nn.Linear(merged, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.hidden))

    def forward(self, pixels):
        x = self.patch(pixels).flatten(2).transpose(1, 2)  # [F, N, Dv], row-major
        pos = (self.row[:, None, :] + self.col[None, :, :]).reshape(self.grid * self.grid, -1)
        x = x + pos
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        f, _, d = x.shape
        g, m = self.grid, self.merge
        # [F, g*g, D] → [F, (g/m)*(g/m), m*m*D]: each output token holds an m×m block of patches
        x = x.reshape(f, g // m, m, g // m, m, d).permute(0, 1, 3, 2, 4, 5).reshape(f, (g // m) * (g // m), m * m * d)
        return self.connector(x)


class CasaModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden)
        casa = set(cfg.active_casa_layers)
        self.blocks = nn.ModuleList([Block(cfg, i in casa) for i in range(cfg.layers)])
        self.norm = RMSNorm(cfg.hidden, cfg.rms_eps)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)
        self.vision = VisionEncoder(cfg)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def casa_blocks(self) -> List[Block]:
        return [b for b in self.blocks if b.casa is not None]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ packed (training)
    def forward_packed(self, batch) -> torch.Tensor:
        """Logits [B, T, V] for the text tokens of whole clips.

        batch: dict with
          ids [B,T] long, pos [B,T] long (self-attention positions),
          win [B,T] long (window id; 0 = prompt, j = frame j, -1 = padding),
          wpos [B,T] long (window-relative position; 1, 2, … in frame windows),
          pixels [B,M,3,H,W] float (frame j is pixels[:, j-1]),
          for insertion: seq_src [B,S] long, seq_pos [B,S] long, text_at [B,T] long (see data.py).
        """
        if self.cfg.fusion == "insertion":
            return self._forward_packed_insertion(batch)
        cfg = self.cfg
        ids, pos, win, wpos, pixels = batch["ids"], batch["pos"], batch["win"], batch["wpos"], batch["pixels"]
        b, t = ids.shape
        m = pixels.shape[1]
        n = cfg.image_tokens
        h = self.embed(ids)
        cos, sin = rope_cos_sin(pos, cfg.head_dim, cfg.rope_theta)
        wcos, wsin = rope_cos_sin(wpos, cfg.head_dim, cfg.rope_theta)
        kvh = cfg.kv_heads
        self_mask = additive(torch.ones(t, t, dtype=torch.bool).tril()).repeat(cfg.heads // kvh, 1)
        img = self.vision(pixels.reshape(b * m, *pixels.shape[2:]))  # [B*M,N,D]
        windows = casa_windows(win, m, cfg)

        def self_mix(attn, x):
            return attn.mix(x, cos, sin, lambda q, k, v: attend_packed(q, k, v, self_mask, cfg))

        def casa_mix(casa, x):
            ik, iv = casa.image_kv(img)  # [B*M,KVH,N,Dh]
            ik = ik.reshape(b, m, kvh, n, cfg.head_dim).transpose(1, 2)
            iv = iv.reshape(b, m, kvh, n, cfg.head_dim).transpose(1, 2)
            return casa.mix(x, wcos, wsin, lambda q, k, v: attend_casa_windows(q, k, v, ik, iv, windows, cfg))

        for blk in self.blocks:
            h = blk(h, self_mix, casa_mix)
        return self.lm_head(self.norm(h))

    def _forward_packed_insertion(self, batch):
        cfg = self.cfg
        ids, pixels = batch["ids"], batch["pixels"]
        b, t = ids.shape
        m = pixels.shape[1]
        text = self.embed(ids)
        img = self.vision(pixels.reshape(b * m, *pixels.shape[2:])).reshape(b, m * cfg.image_tokens, cfg.hidden)
        pool = torch.cat([text, img], dim=1)  # seq_src indexes into [text ; images]
        src = batch["seq_src"]
        h = torch.gather(pool, 1, src[:, :, None].expand(-1, -1, cfg.hidden))
        cos, sin = rope_cos_sin(batch["seq_pos"], cfg.head_dim, cfg.rope_theta)
        chunks = causal_chunks(h.shape[1], cfg)

        def self_mix(attn, x):
            return attn.mix(x, cos, sin, lambda q, k, v: attend_causal_chunked(q, k, v, chunks, cfg))

        for blk in self.blocks:
            h = blk(h, self_mix)
        h = torch.gather(h, 1, batch["text_at"][:, :, None].expand(-1, -1, cfg.hidden))
        return self.lm_head(self.norm(h))

    # ------------------------------------------------------------------ streaming (export)
    def casa_kv(self, image_embeds):
        """[F, N, D] → keys, values [C, F, KVH, N, Dh] for the CASA layers in order."""
        ks, vs = zip(*[blk.casa.image_kv(image_embeds) for blk in self.casa_blocks])
        return torch.stack(ks), torch.stack(vs)

    def decoder_step(self, input_ids, position_ids, window_position_ids, past_keys, past_values,
                     image_keys, image_values, window_keys, window_values):
        """One CASA prefill/decode step over T new text tokens (batch 1).

        past_* [L,1,KVH,P,Dh] (self-attention, keys rotated at their positions);
        image_* [C,1,KVH,N,Dh]; window_* [C,1,KVH,W,Dh] (window text so far, rotated at
        window positions). Returns logits [1,T,V], new_keys/new_values [L,1,KVH,T,Dh],
        new_window_keys/new_window_values [C,1,KVH,T,Dh].

        Written for export: sizes come from the config, masks are built once per step.
        """
        cfg = self.cfg
        h = self.embed(input_ids)
        t = input_ids.shape[1]
        p = past_keys.shape[3]
        n = image_keys.shape[3]
        w = window_keys.shape[3]
        cos, sin = rope_cos_sin(position_ids, cfg.head_dim, cfg.rope_theta)
        wcos, wsin = rope_cos_sin(window_position_ids, cfg.head_dim, cfg.rope_theta)
        query_idx = torch.arange(t)[:, None]
        g = cfg.heads // cfg.kv_heads
        self_mask = _causal_tail_mask(query_idx, p + t, t).repeat(g, 1)
        casa_mask = _causal_tail_mask(query_idx, n + w + t, t).repeat(g, 1)
        self_attn = StepAttention(cfg, cos, sin, self_mask, (past_keys,), (past_values,))
        if cfg.casa_window_text:
            casa_attn = StepAttention(cfg, wcos, wsin, casa_mask, (image_keys, window_keys), (image_values, window_values))
        else:
            casa_attn = ImageOnlyStepAttention(cfg, wcos, wsin, None, (image_keys,), (image_values,))
        return self._casa_blocks(h, self_attn, casa_attn, t)

    def decoder_batch_step(self, input_ids, position_ids, window_position_ids, past_lengths, image_lengths,
                           window_lengths, *caches):
        """Format version 2: one CASA step over T new text tokens for each of B streams.

        Rows are ragged and every cache comes as one tensor per block: `caches` is the L
        self-attention key tensors, the L value tensors ([B,KVH,P,Dh]; row b holds
        past_lengths[b] entries, the rest is padding, masked out), then the C CASA layers'
        image keys and values ([B,KVH,N',Dh], image_lengths[b] entries: 0 in window 0) and
        window keys and values ([B,KVH,W,Dh], window_lengths[b]). Every row feeds T tokens at
        its own positions. Returns logits [B,T,V], new_keys/new_values [L,B,KVH,T,Dh],
        new_window_keys/new_window_values [C,B,KVH,T,Dh]. A masked key adds exactly 0 to the
        softmax, so a row's outputs are those it gets alone."""
        cfg = self.cfg
        if not cfg.casa_window_text:
            raise ValueError("the plain cross-attention ablation has no batched step")
        layers, c = cfg.layers, len(cfg.active_casa_layers)
        past_k, past_v = caches[:layers], caches[layers:2 * layers]
        image_k, image_v, window_k, window_v = (caches[2 * layers + i * c:2 * layers + (i + 1) * c] for i in range(4))
        b, t = input_ids.shape[0], input_ids.shape[1]
        g = cfg.heads // cfg.kv_heads
        h = self.embed(input_ids)
        cos, sin = rope_cos_sin(position_ids, cfg.head_dim, cfg.rope_theta)
        wcos, wsin = rope_cos_sin(window_position_ids, cfg.head_dim, cfg.rope_theta)
        causal = grouped_causal_mask(t, g)
        past_mask = additive(ragged_valid(past_lengths, past_k[0].shape[2]))[:, None, None, :]
        casa_mask = ragged_step_mask(torch.cat([ragged_valid(image_lengths, image_k[0].shape[2]),
                                                ragged_valid(window_lengths, window_k[0].shape[2])], dim=1), causal, b)
        self_attn = SplitStepAttention(cfg, cos, sin, past_mask, causal, (past_k,), (past_v,), (b, t))
        casa_attn = StepAttention(cfg, wcos, wsin, casa_mask, (image_k, window_k), (image_v, window_v), (b, t))
        return self._casa_blocks(h, self_attn, casa_attn, t)

    def _casa_blocks(self, h, self_attn: StepAttention, casa_attn: StepAttention, t):
        """The blocks of a streaming CASA step over the embedded tokens h: logits and the
        new self-attention and CASA keys and values."""
        c = 0
        for i, blk in enumerate(self.blocks):
            h = blk(h, functools.partial(self_attn, i), functools.partial(casa_attn, c))
            c += blk.casa is not None
        logits = self.lm_head(self.norm(h))
        return (logits, *self_attn.stacked(t), *casa_attn.stacked(t))

    def insertion_step(self, input_ids, image_embeds, position_ids, past_keys, past_values):
        """Insertion twin: [image_embeds ; embed(input_ids)] as one chunk of N+T tokens.

        Returns logits [1,N+T,V] and new_keys/new_values [L,1,KVH,N+T,Dh].
        """
        cfg = self.cfg
        h = torch.cat([image_embeds, self.embed(input_ids)], dim=1)
        t = h.shape[1]
        p = past_keys.shape[3]
        cos, sin = rope_cos_sin(position_ids, cfg.head_dim, cfg.rope_theta)
        mask = _causal_tail_mask(torch.arange(t)[:, None], p + t, t).repeat(cfg.heads // cfg.kv_heads, 1)
        self_attn = StepAttention(cfg, cos, sin, mask, (past_keys,), (past_values,))
        for i, blk in enumerate(self.blocks):
            h = blk(h, functools.partial(self_attn, i))
        return (self.lm_head(self.norm(h)), *self_attn.stacked(t))

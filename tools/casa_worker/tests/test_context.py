"""The bounded context: the ONNX engine's eviction rule (src/model/kv-cache.ts), and the
re-rotation that keeps the kept keys at contiguous positions."""
import math

import torch

from tools.casa_model.model import apply_rope, rope_cos_sin
from tools.casa_worker.context import BoundedContext, Policy, cut_and_rotate, inverse_frequencies, rotate_keys


class ListStore:
    """Entries are their original positions, so what was evicted is visible."""

    def __init__(self):
        self.items = []

    def length(self):
        return len(self.items)

    def evict(self, start, count):
        del self.items[start:start + count]

    def append(self, n):
        base = max(self.items, default=-1) + 1
        self.items.extend(range(base, base + n))


def run_frames(policy, prompt, frame_tokens, frames):
    store = ListStore()
    ctx = BoundedContext(policy, store)
    ctx.ensure_room(prompt, False)
    store.append(prompt)
    for _ in range(frames):
        ctx.ensure_room(2, True)
        ctx.mark_frame_start()
        store.append(2)
        for _ in range(frame_tokens - 2):
            ctx.ensure_room(1, False)
            store.append(1)
    return store, ctx


def test_evicts_whole_frames_after_the_sink_in_chunks():
    store, ctx = run_frames(Policy(40, 10, 8), prompt=10, frame_tokens=5, frames=12)
    assert store.items[:10] == list(range(10))  # the sink stays
    assert store.length() <= 40
    # the kept history starts at a frame: its first entry is a frame's first marker
    first_kept = store.items[10]
    assert (first_kept - 10) % 5 == 0
    assert ctx.evictions >= 1 and ctx.evicted_tokens % 5 == 0
    assert all(f.start > 10 for f in ctx.frames[1:])


def test_unbounded_never_evicts():
    store, ctx = run_frames(Policy(math.inf, 10, 8), prompt=10, frame_tokens=5, frames=30)
    assert store.length() == 160 and ctx.evictions == 0


def test_rerotated_keys_equal_keys_made_at_the_new_position():
    torch.manual_seed(0)
    head_dim, theta = 32, 10000.0
    raw = torch.randn(1, 2, 6, head_dim)
    pos = torch.arange(100, 106)[None]
    cos, sin = rope_cos_sin(pos, head_dim, theta)
    at_100 = apply_rope(raw, cos, sin, head_dim)
    cos2, sin2 = rope_cos_sin(pos - 37, head_dim, theta)
    at_63 = apply_rope(raw, cos2, sin2, head_dim)
    moved = rotate_keys(at_100, -37, inverse_frequencies(head_dim, theta))
    assert torch.allclose(moved, at_63, atol=1e-5)


def test_cut_and_rotate_keeps_the_head_and_moves_the_tail():
    inv = inverse_frequencies(4, 10000.0)
    x = torch.arange(2 * 10 * 4, dtype=torch.float32).reshape(1, 2, 10, 4)
    values = cut_and_rotate(x, 3, 4, 2, None)
    assert values.shape == (1, 2, 6, 4)
    assert torch.equal(values[:, :, :3], x[:, :, :3]) and torch.equal(values[:, :, 3:], x[:, :, 7:])
    keys = cut_and_rotate(x, 3, 4, 2, inv)
    assert torch.allclose(keys[:, :, 3:], rotate_keys(x[:, :, 7:], -4, inv))

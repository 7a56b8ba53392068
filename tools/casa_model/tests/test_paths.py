"""The streaming (exported) path computes exactly what the packed training path computes."""
import numpy as np
import pytest
import torch

from tools.casa_model.data import Special, build_sequence, collate, normalise
from tools.casa_model.model import CasaModel, ModelConfig
from tools.casa_model.stream import Session
from tools.casa_model.world import make_clip, render_clip


def _model(fusion, tok, **kw):
    torch.manual_seed(0)
    m = CasaModel(ModelConfig(fusion=fusion, vocab_size=tok.size, casa_layers=(1, 3), **kw))
    # non-trivial weights: random norms so no path hides behind the identity
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m.eval()


def _streamed_logits(model, tok, clip, frames):
    """Feeds the clip's ground-truth tokens through the streaming session."""
    sp = Special.of(tok)
    s = Session(model, tok)
    rows = [s.prefill_prompt()[None]]
    seq = build_sequence(clip, tok)
    for j, start in enumerate(seq.frame_starts):
        end = seq.frame_starts[j + 1] if j + 1 < len(seq.frame_starts) else len(seq.ids)
        rows.append(s.start_frame(frames[j])[None])
        for tid in seq.ids[start + 2:end]:
            rows.append(s.feed([tid]))
    return seq, rows


@pytest.mark.parametrize("fusion", ["casa", "insertion"])
def test_streaming_equals_packed(fusion, tok):
    clip = make_clip(7, 6)
    frames = render_clip(clip, 64)
    model = _model(fusion, tok)
    seq = build_sequence(clip, tok)
    batch = collate([seq], normalise(frames)[None], Special.of(tok), fusion, model.cfg.image_tokens)
    with torch.no_grad():
        packed = model.forward_packed(batch)[0]
    _, rows = _streamed_logits(model, tok, clip, frames)
    # rows: the prompt's last logits, then per frame the post-image marker's and each fed token's
    streamed = []
    for r in rows:
        streamed.append(r[-1] if r.dim() == 2 else r)
    # positions with a prediction in the streamed run: prompt end, each frame's post-image marker and text
    idx = [len(seq.ids) - len(seq.ids) + seq.frame_starts[0] - 1]
    for j, start in enumerate(seq.frame_starts):
        end = seq.frame_starts[j + 1] if j + 1 < len(seq.frame_starts) else len(seq.ids)
        idx += list(range(start + 1, end))
    assert len(idx) == len(streamed)
    diff = max(float((packed[i] - s).abs().max()) for i, s in zip(idx, streamed))
    assert diff <= 1e-4, diff


def test_casa_window_resets_per_frame(tok):
    """Changing frame 1's pixels leaves the first CASA layer's output in window 3 bit-identical
    (its keys/values are frame 3's image and window-3 text only), while the insertion twin,
    whose self-attention holds frame 1's image tokens, changes. Deeper CASA layers may differ:
    frame 1 reaches them through the hidden states of window-1 text, by design."""
    clip = make_clip(3, 4)
    frames = render_clip(clip, 64)
    other = frames.copy()
    other[0] = 255 - other[0]
    for fusion in ("casa", "insertion"):
        model = _model(fusion, tok)
        outs = []
        for fr in (frames, other):
            seq = build_sequence(clip, tok)
            batch = collate([seq], normalise(fr)[None], Special.of(tok), fusion, model.cfg.image_tokens)
            captured = []
            hooks = [blk.casa.attn.o.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
                     for blk in model.casa_blocks]
            with torch.no_grad():
                logits = model.forward_packed(batch)[0]
            for hk in hooks:
                hk.remove()
            w3 = [i for i, w in enumerate(seq.win) if w == 3]
            outs.append((logits[w3], [c[0, w3] for c in captured]))
        if fusion == "casa":
            assert torch.equal(outs[0][1][0], outs[1][1][0])
            w1 = [i for i, w in enumerate(seq.win) if w == 1]
            assert float((outs[0][0] - outs[1][0]).abs().max()) >= 0  # logits may differ via text states
        else:
            assert float((outs[0][0] - outs[1][0]).abs().max()) > 1e-3


def test_streaming_window_state_is_swapped(tok):
    """In the streaming session the CASA state after a new frame is that frame's image K/V
    and an empty window; the self-attention cache holds text tokens only."""
    model = _model("casa", tok)
    clip = make_clip(5, 3)
    frames = render_clip(clip, 64)
    s = Session(model, tok)
    s.prefill_prompt()
    for f in frames:
        s.caption_frame(f, 4)
    expected_k, _ = model.casa_kv(model.vision(torch.from_numpy(normalise(frames[-1][None]))))
    s.start_frame(frames[-1])
    assert torch.allclose(s.img_k, expected_k, atol=1e-6)
    assert s.win_k.shape[3] == 2  # just the two marker tokens
    assert s.past_k.shape[3] == s.text_tokens


@pytest.mark.parametrize("window_text", [True, False])
def test_packed_batch_matches_each_sequence_alone(tok, window_text):
    """Training packs clips of different lengths (and evicted-context cuts) into one padded
    batch; every sequence's logits are those it gets alone, so the window-by-window CASA
    layout neither leaks between sequences nor depends on its padding."""
    model = _model("casa", tok, casa_window_text=window_text)
    sp = Special.of(tok)
    clips = [make_clip(11, 5), make_clip(12, 3)]
    seqs = [build_sequence(clips[0], tok), build_sequence(clips[1], tok, keep=[1, 2])]
    pixels = np.zeros((2, 5, 3, 64, 64), np.float32)
    pixels[0] = normalise(render_clip(clips[0], 64))
    pixels[1, :2] = normalise(render_clip(clips[1], 64)[1:])
    with torch.no_grad():
        packed = model.forward_packed(collate(seqs, pixels, sp, "casa", model.cfg.image_tokens))
        for i, seq in enumerate(seqs):
            alone = model.forward_packed(collate([seq], pixels[i:i + 1, :len(seq.frames)], sp, "casa",
                                                 model.cfg.image_tokens))[0]
            assert float((packed[i, :len(seq.ids)] - alone).abs().max()) <= 1e-5


def _pad(tensors, axis):
    """Stacks per-stream caches [..., 1, KVH, n_i, Dh] into one batch, right-padded with zeros on `axis`."""
    size = max(t.shape[axis] for t in tensors)
    padded = []
    for t in tensors:
        shape = list(t.shape)
        shape[axis] = size - t.shape[axis]
        padded.append(torch.cat([t, torch.zeros(shape)], dim=axis))
    return torch.cat(padded, dim=1)


def _batched_feed(model, sessions, ids):
    """One decoder_batch_step (format version 2) for every session's next token, from their
    own caches padded into one batch; the sessions themselves are left unchanged."""
    lengths = lambda xs: torch.tensor([x.shape[3] for x in xs])
    caches = []
    for attr in ("past_k", "past_v", "img_k", "img_v", "win_k", "win_v"):
        stacked = _pad([getattr(s, attr) for s in sessions], 3)
        caches += [stacked[i] for i in range(stacked.shape[0])]
    with torch.no_grad():
        out = model.decoder_batch_step(
            torch.tensor([[i] for i in ids]), torch.tensor([[s.pos] for s in sessions]),
            torch.tensor([[s.wpos + 1] for s in sessions]), lengths([s.past_k for s in sessions]),
            lengths([s.img_k for s in sessions]), lengths([s.win_k for s in sessions]), *caches)
    return out


def test_batched_step_equals_each_stream_alone(tok):
    """Format version 2's decoder_batch_step: streams at different lengths (one still in
    window 0, without an image) stepped together in one padded batch get the logits and new
    K/V each gets alone from decoder_step; padding and the other rows change nothing."""
    model = _model("casa", tok)
    sessions = []
    for seed, frames in ((21, 0), (22, 1), (23, 3)):
        s = Session(model, tok)
        s.prefill_prompt()
        clip = make_clip(seed, max(frames, 1))
        for f in render_clip(clip, 64)[:frames]:
            s.caption_frame(f, 2 + seed % 3)
        if frames:
            s.start_frame(render_clip(clip, 64)[-1])
        sessions.append(s)
    assert len({s.past_k.shape[3] for s in sessions}) == 3
    ids = [40, 41, 42]
    logits, nk, nv, nwk, nwv = _batched_feed(model, sessions, ids)
    for b, (s, tid) in enumerate(zip(sessions, ids)):
        with torch.no_grad():
            ref = model.decoder_step(torch.tensor([[tid]]), torch.tensor([[s.pos]]), torch.tensor([[s.wpos + 1]]),
                                     s.past_k, s.past_v, s.img_k, s.img_v, s.win_k, s.win_v)
        for got, want in zip((logits[b:b + 1], nk[:, b:b + 1], nv[:, b:b + 1], nwk[:, b:b + 1], nwv[:, b:b + 1]), ref):
            assert float((got - want).abs().max()) <= 1e-5

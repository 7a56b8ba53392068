import hashlib

import numpy as np

from tools.casa_model.data import caption_text
from tools.casa_model.tokenizer import ByteLevelBPE, train_bpe
from tools.casa_model.world import make_clip, render_clip
from tools.casa_model.evaluate import score


def _digest(seed):
    clip = make_clip(seed, 20)
    return hashlib.sha256(render_clip(clip, 64).tobytes() + "\n".join(clip.captions).encode()).hexdigest()


def test_world_is_deterministic_from_seed():
    assert _digest(11) == _digest(11)
    assert _digest(11) != _digest(12)


def test_captions_use_history_words_and_silence():
    caps = [c for s in range(60) for c in make_clip(s, 40).captions]
    words = " ".join(caps).split()
    for w in ("it", "another", "again", "meets", "leaves", "grows", "shrinks", "stops", "turns", "enters"):
        assert w in words, w
    silent = sum(1 for c in caps if not c) / len(caps)
    assert 0.1 < silent < 0.5


def test_every_named_object_is_visible_or_just_left():
    for s in range(30):
        clip = make_clip(s, 40)
        for f in clip.frames:
            if f.caption.endswith("enters from the left"):
                assert any(o.x < 0.2 and o.direction == "right" for o in f.objects)


def test_tokenizer_round_trip_and_hf_json(tmp_path, tok):
    text = " another big yellow triangle enters from the bottom"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    again = ByteLevelBPE.load(str(path))
    assert again.encode(text) == ids
    assert again.encode("<|im_start|>user\nhi<|im_end|>")[0] == tok.token_id("<|im_start|>")


def test_score():
    s = score([("it stops", "it stops"), ("", ""), ("it moves left", "it moves right")])
    assert s["frameExactMatch"] == round(2 / 3, 4)
    assert abs(s["tokenF1"] - 4 / 5) < 1e-3
